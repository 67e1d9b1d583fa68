//! A headless Chromium driven over the DevTools protocol, for the
//! dashboard's browser test: navigate, evaluate JavaScript, take
//! screenshots, allow downloads, and collect console errors and uncaught
//! exceptions. Chromium must be there: not finding or starting it fails
//! the test (a skipped browser check must never pass for a working one).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

type Waiting = Arc<parking_lot::Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// The browser process and its DevTools connection. Killed on drop.
pub struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    out: mpsc::UnboundedSender<Message>,
    waiting: Waiting,
    next: AtomicU64,
    /// Every event the browser sent.
    events: Arc<parking_lot::Mutex<Vec<Value>>>,
    /// Its stderr, for failure messages.
    stderr: Arc<parking_lot::Mutex<Vec<String>>>,
}

/// One page (a target attached with its own session).
pub struct Page<'b> {
    browser: &'b Browser,
    session: String,
}

/// `$CHROMIUM`, else the first of the usual names on `PATH`.
fn find_chromium() -> String {
    if let Ok(path) = std::env::var("CHROMIUM")
        && !path.is_empty()
    {
        return path;
    }
    for name in [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
        if let Some(path) = found.filter(|p| !p.is_empty()) {
            return path;
        }
    }
    panic!(
        "no Chromium found (set CHROMIUM, or install it: apt-get install chromium; \
         scripts/tools does this): the dashboard's browser test cannot be skipped"
    );
}

impl Browser {
    /// Starts a headless Chromium with a fresh profile and connects to it.
    pub async fn launch() -> Browser {
        let program = find_chromium();
        let profile = tempfile::tempdir().expect("profile folder");
        let mut child = Command::new(&program)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--disable-dev-shm-usage",
                "--remote-debugging-port=0",
                "--window-size=1400,1000",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        let stderr = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let (url_tx, url_rx) = std::sync::mpsc::channel::<String>();
        let pipe = child.stderr.take().expect("stderr is piped");
        let kept = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    let _ = url_tx.send(url.trim().to_string());
                }
                kept.lock().push(line);
            }
        });
        let url = tokio::task::spawn_blocking(move || url_rx.recv_timeout(Duration::from_secs(30)))
            .await
            .expect("join");
        let Ok(url) = url else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{program} did not start its DevTools endpoint; stderr:\n{}",
                stderr.lock().join("\n")
            );
        };
        let (socket, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .expect("DevTools websocket");
        let (mut sink, mut stream) = socket.split();
        let (out, mut queue) = mpsc::unbounded_channel::<Message>();
        tokio::spawn(async move {
            while let Some(message) = queue.recv().await {
                if sink.send(message).await.is_err() {
                    return;
                }
            }
        });
        let waiting: Waiting = Arc::default();
        let events: Arc<parking_lot::Mutex<Vec<Value>>> = Arc::default();
        let (w, e) = (waiting.clone(), events.clone());
        tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let Ok(value) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                match value["id"].as_u64() {
                    Some(id) => {
                        if let Some(tx) = w.lock().remove(&id) {
                            let _ = tx.send(value);
                        }
                    }
                    None => e.lock().push(value),
                }
            }
        });
        Browser {
            child,
            _profile: profile,
            out,
            waiting,
            next: AtomicU64::new(1),
            events,
            stderr,
        }
    }

    /// Sends a command (to a page's session, or to the browser) and waits
    /// for its answer; a protocol error fails the test.
    pub async fn call(&self, session: Option<&str>, method: &str, params: Value) -> Value {
        let answer = self.call_raw(session, method, params).await;
        assert!(
            answer.get("error").is_none(),
            "{method} failed: {}",
            answer["error"]
        );
        answer["result"].clone()
    }

    /// [`Browser::call`], answering protocol errors instead of failing.
    async fn call_raw(&self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().insert(id, tx);
        self.out
            .send(Message::text(message.to_string()))
            .expect("DevTools connection open");
        tokio::time::timeout(Duration::from_secs(30), rx)
            .await
            .unwrap_or_else(|_| panic!("no answer to {method}"))
            .expect("DevTools connection open")
    }

    /// A new page, with the events the test reads enabled.
    pub async fn page(&self, width: u32, height: u32) -> Page<'_> {
        let target = self
            .call(None, "Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let attached = self
            .call(
                None,
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await;
        let page = Page {
            browser: self,
            session: attached["sessionId"].as_str().expect("session").to_string(),
        };
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            page.call(domain, json!({})).await;
        }
        page.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        )
        .await;
        page
    }

    /// Downloads go to `dir`, without asking.
    pub async fn allow_downloads(&self, dir: &Path) {
        self.call(
            None,
            "Browser.setDownloadBehavior",
            json!({"behavior": "allow", "downloadPath": dir.display().to_string(), "eventsEnabled": true}),
        )
        .await;
    }

    /// Console errors, uncaught exceptions and error log entries so far,
    /// as text.
    pub fn errors(&self) -> Vec<String> {
        self.events
            .lock()
            .iter()
            .filter_map(|e| {
                let p = &e["params"];
                match e["method"].as_str()? {
                    "Runtime.exceptionThrown" => Some(format!(
                        "exception: {}",
                        p["exceptionDetails"]["exception"]["description"]
                            .as_str()
                            .or(p["exceptionDetails"]["text"].as_str())
                            .unwrap_or("?")
                    )),
                    "Runtime.consoleAPICalled" if p["type"] == "error" => {
                        Some(format!("console.error: {}", p["args"]))
                    }
                    "Log.entryAdded" if p["entry"]["level"] == "error" => Some(format!(
                        "log: {} {}",
                        p["entry"]["text"].as_str().unwrap_or("?"),
                        p["entry"]["url"].as_str().unwrap_or("")
                    )),
                    _ => None,
                }
            })
            .collect()
    }

    /// Chromium's own stderr (for failure messages).
    pub fn stderr(&self) -> String {
        self.stderr.lock().join("\n")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Page<'_> {
    pub async fn call(&self, method: &str, params: Value) -> Value {
        self.browser.call(Some(&self.session), method, params).await
    }

    /// Loads `url` and waits until the document is complete.
    pub async fn goto(&self, url: &str) {
        let navigated = self.call("Page.navigate", json!({"url": url})).await;
        assert!(
            navigated.get("errorText").is_none(),
            "cannot load {url}: {navigated}"
        );
        self.wait("the page loaded", "document.readyState === 'complete'")
            .await;
    }

    /// Evaluates `expression` (promises awaited) and returns its value; a
    /// JavaScript exception fails the test.
    pub async fn eval(&self, expression: &str) -> Value {
        let got = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        assert!(
            got.get("exceptionDetails").is_none(),
            "{expression} threw: {}",
            got["exceptionDetails"]
        );
        got["result"]["value"].clone()
    }

    /// Polls `expression` until it is `true`; fails naming `what` after 10 s.
    /// While a page loads, its elements may not exist yet and the context
    /// may change under the call: both only mean "not yet".
    pub async fn wait(&self, what: &str, expression: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let guarded = format!(
            "(() => {{ try {{ return ({expression}); }} catch (e) {{ return false; }} }})()"
        );
        loop {
            let got = self
                .browser
                .call_raw(
                    Some(&self.session),
                    "Runtime.evaluate",
                    json!({"expression": guarded, "returnByValue": true, "awaitPromise": true}),
                )
                .await;
            if got["result"]["result"]["value"] == json!(true) {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what} ({expression}); the page says: {}",
                    self.eval("document.body ? document.body.innerText.slice(0, 3000) : ''")
                        .await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks the element `selector` names.
    pub async fn click(&self, selector: &str) {
        let clicked = self
            .eval(&format!(
                "(() => {{ const e = document.querySelector({s}); if (!e) return false; e.click(); return true; }})()",
                s = json!(selector)
            ))
            .await;
        assert_eq!(clicked, json!(true), "nothing to click at {selector}");
    }

    /// Saves a PNG of the whole page.
    pub async fn screenshot(&self, path: &Path) {
        let shot = self
            .call(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": true}),
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("base64 screenshot");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot folder");
        }
        std::fs::write(path, png).expect("write screenshot");
    }
}
