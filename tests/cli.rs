//! The command line: `rust-strom check` on good and bad folders, refused
//! flags, the message when there is neither `--manifests` nor a cluster,
//! and a `-c` config file whose `request-timeout` takes effect.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly

mod support;

use std::time::Duration;

use http::{Response, StatusCode};
use support::*;
use tokio::io::AsyncWriteExt as _;

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn good_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "web.yaml",
        &docs(&[
            ingress(
                "shop",
                "web",
                "good.local",
                &[("/", "Prefix", "web"), ("/api", "Exact", "web")],
            ),
            service("shop", "web"),
            slice("shop", "web-0", "web", 8080),
        ]),
    );
    dir
}

#[test]
fn check_accepts_a_good_folder_and_prints_the_routes() {
    let dir = good_folder();
    let out = run_bin(&["check", "--manifests", dir.path().to_str().unwrap()]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("good.local"))
        .collect();
    assert_eq!(rows.len(), 2, "{text}");
    for row in &rows {
        assert!(row.contains("shop/web"), "{row}");
        assert!(row.contains("127.0.0.1:8080"), "{row}");
    }
    assert!(
        rows.iter()
            .any(|r| r.contains(" / ") && r.contains("Prefix")),
        "{text}"
    );
    assert!(
        rows.iter()
            .any(|r| r.contains(" /api ") && r.contains("Exact")),
        "{text}"
    );
    assert!(!text.contains("rejected"), "{text}");
}

#[test]
fn check_rejects_a_bad_ingress_and_still_prints_the_good_routes() {
    let dir = good_folder();
    write(
        dir.path(),
        "bad.yaml",
        &ingress("shop", "relative", "bad.local", &[("api", "Prefix", "web")]),
    );
    write(
        dir.path(),
        "nosvc.yaml",
        &ingress(
            "shop",
            "nosvc",
            "nosvc.local",
            &[("/", "Prefix", "does-not-exist")],
        ),
    );
    let out = run_bin(&["check", "--manifests", dir.path().to_str().unwrap()]);
    let text = stdout(&out);
    assert!(!out.status.success(), "bad Ingress accepted:\n{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("good.local") && l.contains("shop/web")),
        "good routes missing:\n{text}"
    );
    let relative = text
        .lines()
        .find(|l| l.contains("shop/relative"))
        .unwrap_or_else(|| panic!("shop/relative not named:\n{text}"));
    assert!(relative.contains("rejected"), "{relative}");
    assert!(relative.contains("absolute"), "{relative}");
    let nosvc = text
        .lines()
        .find(|l| l.contains("rejected") && l.contains("shop/nosvc"))
        .unwrap_or_else(|| panic!("shop/nosvc not named:\n{text}"));
    assert!(nosvc.contains("shop/does-not-exist"), "{nosvc}");
    assert!(nosvc.contains("not found"), "{nosvc}");
}

#[test]
fn check_rejects_a_file_that_does_not_parse() {
    let dir = good_folder();
    write(
        dir.path(),
        "broken.yaml",
        "kind: Ingress\nmetadata: {name: [\n",
    );
    let out = run_bin(&["check", "--manifests", dir.path().to_str().unwrap()]);
    let text = stdout(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("rejected") && l.contains("broken.yaml")),
        "{text}"
    );
    assert!(text.contains("good.local"), "{text}");
}

#[test]
fn check_refuses_a_missing_folder() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let out = run_bin(&["check", "--manifests", missing.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("nope"), "{}", stderr(&out));
}

#[test]
fn serving_without_manifests_or_a_cluster_is_refused_with_a_hint() {
    // No folder means cluster mode; with no cluster and no kubeconfig to
    // be found (whatever this machine has), it must say what to give.
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(BIN)
        .args([
            "--http-addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .env("KUBECONFIG", dir.path().join("none"))
        .env("HOME", dir.path())
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + DEADLINE;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("rust-strom kept running without a cluster");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("--manifests") && err.contains("--kubeconfig"),
        "{err}"
    );

    // A kubeconfig that is not there is named. Free ports: the listeners
    // are bound before the kubeconfig is read, and the default ones may be
    // taken on a shared machine.
    let missing = dir.path().join("missing-kubeconfig");
    let out = run_bin(&[
        "--kubeconfig",
        missing.to_str().unwrap(),
        "--http-addr",
        "127.0.0.1:0",
        "--metrics-addr",
        "127.0.0.1:0",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("missing-kubeconfig"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_flag_values_are_refused() {
    let dir = good_folder();
    let path = dir.path().to_str().unwrap();
    for (flag, value) in [
        ("--request-timeout", "banana"),
        ("--shutdown-grace", "soon"),
        ("--http-addr", "not-an-address"),
        ("--workers", "many"),
    ] {
        let mut args = vec!["--manifests", path, flag, value];
        for (default_flag, default_value) in [
            ("--http-addr", "127.0.0.1:0"),
            ("--metrics-addr", "127.0.0.1:0"),
        ] {
            if default_flag != flag {
                args.extend([default_flag, default_value]);
            }
        }
        let out = run_bin(&args);
        assert!(!out.status.success(), "{flag} {value} accepted");
        let err = stderr(&out);
        assert!(err.contains(flag) && err.contains(value), "{flag}: {err}");
    }
    // A bad value in the config file is refused too, naming the key.
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "request-timeout = \"banana\"\n").unwrap();
    let out = run_bin(&[
        "-c",
        config.to_str().unwrap(),
        "--manifests",
        path,
        "--http-addr",
        "127.0.0.1:0",
        "--metrics-addr",
        "127.0.0.1:0",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("request-timeout"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_request_timeout_takes_effect() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests).unwrap();
    let slow = backend(|_req| async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        Response::new(full("too late\n"))
    })
    .await;
    write(
        &manifests,
        "slow.yaml",
        &docs(&[
            ingress("default", "slow", "slow.local", &[("/", "Prefix", "slow")]),
            backend_objects("default", "slow", &[slow]),
        ]),
    );
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "manifests = \"{}\"\nhttp-addr = \"127.0.0.1:0\"\nmetrics-addr = \"127.0.0.1:0\"\n\
             workers = 2\nrequest-timeout = \"300ms\"\n",
            manifests.display()
        ),
    )
    .unwrap();
    let proxy = Proxy::start_args(&["-c".to_string(), config.display().to_string()]).await;

    let resp = proxy.get("slow.local", "/").await;
    assert_eq!(resp.status, StatusCode::GATEWAY_TIMEOUT, "{}", resp.body);
    assert!(!resp.body.trim().is_empty());
    assert_eq!(proxy.metric("http_timeouts_total").await, Some(1.0));
}

/// `demo` with port 0 announces the ports it really listens on, and on
/// SIGTERM removes the manifests folder it made for itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_names_its_real_ports_and_removes_its_folder() {
    use std::io::BufRead as _;
    use std::process::{Command, Stdio};

    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["demo", "--http-addr", "127.0.0.1:0"])
        .args(["--metrics-addr", "127.0.0.1:0", "--workers", "1"])
        .env("TMPDIR", tmp.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let prefix = "curl -H 'Host: demo.local' http://localhost:";
    let mut dashboard = None;
    let port: u16 = loop {
        let line = rx
            .recv_timeout(DEADLINE)
            .expect("the demo prints its banner");
        if let Some(rest) = line.trim().strip_prefix("dashboard: http://") {
            let addr = rest.split('/').next().unwrap();
            dashboard = Some(addr.parse::<std::net::SocketAddr>().unwrap());
        }
        if let Some(rest) = line.trim().strip_prefix(prefix) {
            break rest.trim_end_matches('/').parse().unwrap();
        }
    };
    assert_ne!(port, 0);
    // The banner names the dashboard, and a request through the proxy is in
    // its live feed within a second.
    let dashboard = dashboard.expect("the banner names the dashboard");
    let mut feed = tokio::net::TcpStream::connect(dashboard).await.unwrap();
    feed.write_all(b"GET /api/feed HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    // The first `meta` event says the feed is open.
    read_until(&mut feed, &mut seen, "event: meta").await;
    let sent = std::time::Instant::now();
    let resp = get(port, "demo.local", "/from-the-demo-test").await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    read_until(&mut feed, &mut seen, "\"path\":\"/from-the-demo-test\"").await;
    assert!(
        sent.elapsed() < Duration::from_secs(1),
        "the request reached the feed after {:?}",
        sent.elapsed()
    );
    let folder = tmp.path().join(format!("rust-strom-demo-{}", child.id()));
    assert!(folder.join("demo-ingress.yaml").is_file());

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + DEADLINE;
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the demo did not exit"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "{exit}");
    assert!(!folder.exists(), "{} was left behind", folder.display());
}

/// Reads `stream` into `seen` until it holds `what`.
async fn read_until(stream: &mut tokio::net::TcpStream, seen: &mut Vec<u8>, what: &str) {
    use tokio::io::AsyncReadExt as _;
    let found = tokio::time::timeout(DEADLINE, async {
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(seen).contains(what) {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the feed closed");
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(
        found.is_ok(),
        "no {what:?} in the feed: {}",
        String::from_utf8_lossy(seen)
    );
}
