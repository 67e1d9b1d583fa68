//! Loading a folder of YAML or JSON manifests into the store, for the
//! standalone binary: nested folders, multi-document files and `kind: List`
//! work; kinds the server does not serve are skipped and reported.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::store::Store;

/// What a load did.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Objects created or replaced.
    pub applied: usize,
    /// `file: why` for every document that was not loaded.
    pub skipped: Vec<String>,
}

/// Loads every `.yaml`, `.yml` and `.json` file under `dir`, in path order.
pub fn load_dir(store: &Store, dir: &Path) -> std::io::Result<Loaded> {
    let mut files = Vec::new();
    collect(dir, &mut files)?;
    files.sort();
    let mut loaded = Loaded::default();
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        let shown = file.display();
        for doc in serde_norway::Deserializer::from_str(&text) {
            let value = match Value::deserialize(doc) {
                Ok(Value::Null) => continue,
                Ok(value) => value,
                Err(err) => {
                    loaded.skipped.push(format!("{shown}: {err}"));
                    continue;
                }
            };
            for obj in flatten(value) {
                match store.apply(&obj) {
                    Ok(_) => loaded.applied += 1,
                    Err(err) => loaded.skipped.push(format!("{shown}: {err}")),
                }
            }
        }
    }
    Ok(loaded)
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, files)?;
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        {
            files.push(path);
        }
    }
    Ok(())
}

/// A `kind: List` (or `XList`) becomes its items.
fn flatten(value: Value) -> Vec<Value> {
    let is_list = value
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k.ends_with("List"));
    match value {
        Value::Object(mut map) if is_list => match map.remove("items") {
            Some(Value::Array(items)) => items.into_iter().flat_map(flatten).collect(),
            _ => Vec::new(),
        },
        other => vec![other],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Registry;
    use std::sync::Arc;

    #[test]
    fn loads_nested_multi_document_files_and_lists() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("nested")).unwrap();
        std::fs::write(
            dir.path().join("a.yaml"),
            "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: demo}\n---\n\
             apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: skipped}\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("nested/list.json"),
            r#"{"apiVersion": "v1", "kind": "List", "items": [
                {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}]}"#,
        )
        .unwrap();
        let store = Store::new(Arc::new(Registry::with_defaults()), 100);
        let loaded = load_dir(&store, dir.path()).unwrap();
        assert_eq!(loaded.applied, 2);
        assert_eq!(loaded.skipped.len(), 1, "{:?}", loaded.skipped);
        assert!(store.get("v1", "Service", Some("demo"), "web").is_some());
        assert!(store.get("v1", "Secret", Some("default"), "s").is_some());
    }
}
