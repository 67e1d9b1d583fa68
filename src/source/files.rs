//! Standalone mode: a folder of Kubernetes YAML, watched for changes.
//!
//! Every reload walks the folder and re-reads only the files whose size,
//! modification time or inode changed, so an atomic replace (write a temp
//! file, rename it over the old one, as editors and ConfigMap mounts do) is
//! seen like any edit. A file that fails to parse keeps its last good objects
//! until it is fixed. Change events from the OS trigger a reload at once; a
//! slow periodic rescan catches anything the OS did not report.
//!
//! The snapshot of every file's objects is kept, and a reload updates it
//! with what the changed files changed: building it again from thousands of
//! objects would cost more than compiling the change.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::mem::{self, Discriminant};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::{Object, ObjectKey, ParseError, Snapshot, parse_manifest};

/// How deep folders are followed (ConfigMap mounts and symlinked folders
/// could otherwise loop).
const MAX_DEPTH: usize = 16;
/// The rescan that backs up OS change events.
const RESCAN_EVERY: Duration = Duration::from_secs(2);

/// The manifests folder and the last good objects of each file in it.
#[derive(Debug)]
pub struct ManifestDir {
    root: PathBuf,
    files: HashMap<PathBuf, FileState>,
    /// Every file's last good objects, as [`ManifestDir::snapshot`] gives
    /// them; kept up to date by each reload.
    snapshot: Snapshot,
    /// The objects (by kind and key) that more than one document defines,
    /// in one file or in several: a reload that touches one builds the
    /// snapshot again, so that the later path keeps winning.
    shared: HashSet<Kind>,
}

/// An object's kind and key: what makes two documents define one object.
type Kind = (Discriminant<Object>, ObjectKey);

/// One file's objects before and after a reload.
struct Edit {
    old: Vec<Object>,
    new: Vec<Object>,
}

#[derive(Debug)]
struct FileState {
    stamp: Stamp,
    /// The last objects this file parsed to; kept when a later version fails.
    objects: Vec<Object>,
    /// Set while the current version of the file does not parse.
    error: Option<String>,
}

/// What identifies a version of a file without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
    device: u64,
}

/// The outcome of one reload.
#[derive(Debug, Default)]
pub struct Reload {
    /// Some file was added, removed, or parsed to new objects.
    pub changed: bool,
    /// Files that failed to read or parse in this reload, with the reason.
    pub errors: Vec<FileError>,
}

/// A file that could not be used; its last good objects stay in force.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The folder or file could not be read.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid Kubernetes YAML or JSON.
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: ParseError,
    },
}

// === impl ManifestDir ===

impl ManifestDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            files: HashMap::new(),
            snapshot: Snapshot::default(),
            shared: HashSet::new(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Re-reads what changed since the last reload.
    pub fn reload(&mut self) -> Reload {
        let mut report = Reload::default();
        let mut found = Vec::new();
        if let Err(source) = walk(&self.root, 0, &mut found) {
            report.errors.push(FileError::Io {
                path: self.root.clone(),
                source,
            });
            // An unreadable folder must not wipe the table: keep everything.
            return report;
        }

        let mut edits = Vec::new();
        let before = self.files.len();
        self.files.retain(|path, state| {
            let keep = found.iter().any(|(p, _)| p == path);
            if !keep {
                let old = mem::take(&mut state.objects);
                edits.push(Edit {
                    old,
                    new: Vec::new(),
                });
            }
            keep
        });
        report.changed |= self.files.len() != before;

        for (path, stamp) in found {
            if self.files.get(&path).is_some_and(|f| f.stamp == stamp) {
                continue;
            }
            let parsed = fs::read_to_string(&path)
                .map_err(|source| FileError::Io {
                    path: path.clone(),
                    source,
                })
                .and_then(|text| {
                    parse_manifest(&text).map_err(|source| FileError::Parse {
                        path: path.clone(),
                        source,
                    })
                });
            let state = self.files.entry(path).or_insert_with(|| FileState {
                stamp,
                objects: Vec::new(),
                error: None,
            });
            state.stamp = stamp;
            match parsed {
                Ok(objects) => {
                    let new = objects.clone();
                    let old = mem::replace(&mut state.objects, objects);
                    edits.push(Edit { old, new });
                    state.error = None;
                    report.changed = true;
                }
                Err(e) => {
                    state.error = Some(e.to_string());
                    report.errors.push(e);
                }
            }
        }
        self.follow(edits);
        report
    }

    /// The objects of every file, last good versions included. Files are
    /// applied in path order, so when two files define the same object the
    /// later path wins, predictably.
    pub fn snapshot(&self) -> Snapshot {
        self.snapshot.clone()
    }

    /// [`ManifestDir::snapshot`], borrowed: what the watcher compiles after
    /// each reload, without copying the keys of thousands of objects.
    pub fn current(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Files whose current version does not parse, with the reason.
    pub fn broken_files(&self) -> Vec<(&Path, &str)> {
        let mut out: Vec<_> = self
            .files
            .iter()
            .filter_map(|(p, f)| f.error.as_deref().map(|e| (p.as_path(), e)))
            .collect();
        out.sort();
        out
    }
}

// === impl ManifestDir (the snapshot) ===

impl ManifestDir {
    /// Brings the snapshot up to date with what the files changed: in
    /// place for a few edits that touch no object defined twice, by a
    /// rebuild otherwise.
    fn follow(&mut self, edits: Vec<Edit>) {
        if edits.is_empty() {
            return;
        }
        let touched: usize = edits.iter().map(|e| e.old.len() + e.new.len()).sum();
        if touched * 2 > self.snapshot.len() || !self.follow_in_place(&edits) {
            self.rebuild();
        }
    }

    /// Applies the edits to the snapshot unless one of them could change
    /// which file wins an object; returns whether it did.
    fn follow_in_place(&mut self, edits: &[Edit]) -> bool {
        let kind = |o: &Object| (mem::discriminant(o), o.key());
        // Objects new in this reload: each may appear once, and nowhere
        // else, for the snapshot to take it as it is.
        let mut added = HashSet::new();
        let mut gone = Vec::new();
        for edit in edits {
            let old: HashSet<Kind> = edit.old.iter().map(kind).collect();
            let mut new = HashSet::new();
            for object in &edit.new {
                let k = kind(object);
                let elsewhere = !old.contains(&k)
                    && (self.snapshot.contains(object) || !added.insert(k.clone()));
                if elsewhere {
                    return false;
                }
                new.insert(k);
            }
            if old.iter().chain(&new).any(|k| self.shared.contains(k)) {
                return false;
            }
            gone.extend(edit.old.iter().filter(|o| !new.contains(&kind(o))));
        }
        for object in gone {
            self.snapshot.remove(object);
        }
        for object in edits.iter().flat_map(|e| &e.new) {
            self.snapshot.insert(object);
        }
        true
    }

    /// Builds the snapshot from every file, in path order.
    fn rebuild(&mut self) {
        let mut paths: Vec<_> = self.files.keys().collect();
        paths.sort();
        let mut snapshot = Snapshot::default();
        let mut shared = HashSet::new();
        for object in paths.into_iter().flat_map(|p| &self.files[p].objects) {
            if snapshot.replace(object) {
                shared.insert((mem::discriminant(object), object.key()));
            }
        }
        self.snapshot = snapshot;
        self.shared = shared;
    }
}

/// Collects the manifest files below `dir`. Hidden entries are skipped: they
/// are editor swap files, or the timestamped copies a ConfigMap mount keeps
/// beside the visible names.
fn walk(dir: &Path, depth: usize, out: &mut Vec<(PathBuf, Stamp)>) -> std::io::Result<()> {
    let meta = fs::metadata(dir)?;
    if meta.is_file() {
        out.push((dir.to_path_buf(), Stamp::of(&meta)));
        return Ok(());
    }
    let mut entries: Vec<_> = fs::read_dir(dir)?.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        // Follows symlinks; a dangling link is skipped, not an error.
        let Ok(meta) = fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            if depth < MAX_DEPTH {
                walk(&path, depth + 1, out)?;
            }
        } else if meta.is_file() && is_manifest(&path) {
            out.push((path, Stamp::of(&meta)));
        }
    }
    Ok(())
}

fn is_manifest(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

// === impl Stamp ===

impl Stamp {
    fn of(meta: &fs::Metadata) -> Self {
        Self {
            len: meta.len(),
            modified: meta.modified().ok(),
            inode: meta.ino(),
            device: meta.dev(),
        }
    }
}

/// Watches `root` and sends `()` whenever something below it may have
/// changed, and every [`RESCAN_EVERY`] in any case. The returned watcher
/// must be kept alive.
pub fn watch(root: &Path) -> (mpsc::Receiver<()>, Option<notify::RecommendedWatcher>) {
    let (tx, rx) = mpsc::channel(1);
    let events = tx.clone();
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if res.is_ok_and(|event| may_change(&event.kind)) {
            // A full channel already holds a pending reload: nothing lost.
            let _ = events.try_send(());
        }
    })
    .and_then(|mut w| w.watch(root, RecursiveMode::Recursive).map(|()| w));
    let watcher = match watcher {
        Ok(w) => Some(w),
        Err(error) => {
            tracing::warn!(%error, root = %root.display(), "cannot watch the manifests folder; rescanning every {RESCAN_EVERY:?} instead");
            None
        }
    };
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(RESCAN_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if tx.send(()).await.is_err() {
                return;
            }
        }
    });
    (rx, watcher)
}

/// Whether an OS event can mean that a file changed. Opening a file or the
/// folder is not a change, and reacting to it would loop: every reload
/// opens the folder, which reports an open, which asks for a reload.
fn may_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SVC_A: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n";
    const SVC_B: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: b}\n";

    fn names(dir: &ManifestDir) -> Vec<String> {
        dir.snapshot()
            .services
            .keys()
            .map(|k| k.to_string())
            .collect()
    }

    #[test]
    fn reads_nested_folders_and_skips_hidden_and_other_files() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir_all(tmp.path().join("nested/deeper")).unwrap();
        fs::create_dir_all(tmp.path().join("..2026_01_01")).unwrap();
        fs::write(tmp.path().join("a.yaml"), SVC_A).unwrap();
        fs::write(tmp.path().join("nested/deeper/b.yml"), SVC_B).unwrap();
        fs::write(
            tmp.path().join("..2026_01_01/c.yaml"),
            "kind: Service\napiVersion: v1\nmetadata: {name: c}",
        )
        .unwrap();
        fs::write(tmp.path().join("notes.txt"), "not yaml: [").unwrap();
        let mut dir = ManifestDir::new(tmp.path());
        let r = dir.reload();
        assert!(r.changed && r.errors.is_empty(), "{r:?}");
        assert_eq!(names(&dir), ["default/a", "default/b"]);
        assert!(!dir.reload().changed, "nothing changed");
    }

    #[test]
    fn broken_file_keeps_last_good_objects_until_fixed() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("a.yaml");
        fs::write(&file, SVC_A).unwrap();
        let mut dir = ManifestDir::new(tmp.path());
        dir.reload();

        fs::write(&file, "apiVersion: v1\nkind: Service\nmetadata: {name: [").unwrap();
        let r = dir.reload();
        assert_eq!(r.errors.len(), 1);
        assert_eq!(names(&dir), ["default/a"]);
        assert_eq!(dir.broken_files().len(), 1);

        fs::write(&file, SVC_B).unwrap();
        let r = dir.reload();
        assert!(r.changed && r.errors.is_empty());
        assert_eq!(names(&dir), ["default/b"]);
        assert!(dir.broken_files().is_empty());
    }

    /// Services `names` with port `port`, one document each.
    fn services(names: &[&str], port: u16) -> String {
        names
            .iter()
            .map(|n| {
                format!(
                    "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {n}}}\nspec: {{ports: [{{port: {port}}}]}}\n"
                )
            })
            .collect()
    }

    /// Writes a file the way editors and ConfigMap mounts do: a new file
    /// renamed over the old one.
    fn replace(dir: &Path, name: &str, text: &str) {
        let staged = dir.join(format!(".{name}.tmp"));
        fs::write(&staged, text).unwrap();
        fs::rename(&staged, dir.join(name)).unwrap();
    }

    #[test]
    fn an_object_in_two_files_is_the_later_paths_through_edits() {
        let tmp = tempfile::tempdir().unwrap();
        let port = |dir: &ManifestDir| {
            let snapshot = dir.snapshot();
            let svc = &snapshot.services[&ObjectKey::new("default", "a")];
            svc.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].port
        };
        replace(tmp.path(), "1.yaml", &services(&["a"], 1));
        replace(tmp.path(), "2.yaml", &services(&["a", "b"], 2));
        let mut dir = ManifestDir::new(tmp.path());
        dir.reload();
        assert_eq!(port(&dir), 2);
        // An edit of the earlier file changes nothing it loses.
        replace(tmp.path(), "1.yaml", &services(&["a", "c"], 3));
        dir.reload();
        assert_eq!(port(&dir), 2);
        assert_eq!(names(&dir), ["default/a", "default/b", "default/c"]);
        // The later file lets go: the earlier one's version shows.
        replace(tmp.path(), "2.yaml", &services(&["b"], 2));
        dir.reload();
        assert_eq!(port(&dir), 3);
        // And takes it again, from a file that did not define it.
        replace(tmp.path(), "0.yaml", &services(&["a"], 9));
        replace(tmp.path(), "3.yaml", &services(&["a"], 4));
        dir.reload();
        assert_eq!(port(&dir), 4);
    }

    /// Random edits, creations and deletions of files that define
    /// overlapping objects: the snapshot kept up to date by each reload is
    /// always the one built from scratch.
    #[test]
    fn the_kept_snapshot_is_the_one_built_from_scratch() {
        let tmp = tempfile::tempdir().unwrap();
        let mut rng = fastrand::Rng::with_seed(7);
        let pool: Vec<String> = (0..150).map(|i| format!("s{i}")).collect();
        let pick = |rng: &mut fastrand::Rng, n: usize| -> Vec<&str> {
            (0..n)
                .map(|_| pool[rng.usize(0..pool.len())].as_str())
                .collect()
        };
        // Enough objects that most edits are followed in place; now and
        // then two files define one object.
        for i in 0..40 {
            let own: Vec<&str> = pool[i * 3..i * 3 + 3].iter().map(String::as_str).collect();
            replace(tmp.path(), &format!("f{i:02}.yaml"), &services(&own, 1));
        }
        let mut dir = ManifestDir::new(tmp.path());
        dir.reload();
        for round in 0..300 {
            let file = format!("f{:02}.yaml", rng.usize(0..48));
            if rng.u8(0..10) == 0 {
                let _ = fs::remove_file(tmp.path().join(&file));
            } else {
                let n = rng.usize(0..4);
                let picked = pick(&mut rng, n);
                replace(tmp.path(), &file, &services(&picked, rng.u16(1..100)));
            }
            dir.reload();
            let mut fresh = ManifestDir::new(tmp.path());
            fresh.reload();
            assert_eq!(
                format!("{:?}", dir.snapshot()),
                format!("{:?}", fresh.snapshot()),
                "round {round}"
            );
        }
    }

    #[test]
    fn atomic_replace_and_delete_are_seen() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("a.yaml");
        fs::write(&file, SVC_A).unwrap();
        let mut dir = ManifestDir::new(tmp.path());
        dir.reload();

        // Same length, new inode: only the rename tells it apart.
        let staged = tmp.path().join(".a.yaml.tmp");
        fs::write(&staged, SVC_B).unwrap();
        fs::rename(&staged, &file).unwrap();
        assert!(dir.reload().changed);
        assert_eq!(names(&dir), ["default/b"]);

        fs::remove_file(&file).unwrap();
        assert!(dir.reload().changed);
        assert!(names(&dir).is_empty());
    }

    #[test]
    fn opening_a_file_is_not_a_change() {
        use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind};
        assert!(!may_change(&EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(!may_change(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(may_change(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(may_change(&EventKind::Create(CreateKind::File)));
        assert!(may_change(&EventKind::Modify(ModifyKind::Any)));
    }

    /// A reload opens the folder and the changed files; if that asked for
    /// another reload, standalone mode would rescan forever.
    #[tokio::test]
    async fn the_watcher_ignores_the_reloads_own_reads() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("a.yaml"), SVC_A).unwrap();
        let (mut rx, watcher) = watch(tmp.path());
        assert!(watcher.is_some(), "inotify watch");
        // The periodic rescan ticks once at the start, then every 2 s.
        rx.recv().await.unwrap();

        let mut dir = ManifestDir::new(tmp.path());
        assert!(dir.reload().changed);
        let quiet = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await;
        assert!(quiet.is_err(), "a reload's own reads asked for a reload");

        // A real change still gets through.
        fs::write(tmp.path().join("b.yaml"), SVC_B).unwrap();
        let woke = tokio::time::timeout(Duration::from_secs(1), rx.recv()).await;
        assert!(woke.is_ok(), "a new file asked for no reload");
    }
}
