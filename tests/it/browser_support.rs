//! A real headless Chromium for the browser tests: each `Browser` is its own chromedriver and
//! W3C WebDriver session, driven by a small client over WebDriver's JSON endpoints, and torn
//! down on drop, so a failed test leaves no process behind.
// Not every test module uses every helper.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

/// Debian's `chromium` and `chromium-driver` (scripts/test installs them).
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long chromedriver and the browser get to start, and any one command to answer.
const START_LIMIT: Duration = Duration::from_secs(30);
const COMMAND_LIMIT: Duration = Duration::from_secs(30);
/// How long a wait for something the page does (a navigation, an element) may take.
const WAIT_LIMIT: Duration = Duration::from_secs(10);

/// The key under which WebDriver names an element in its answers.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The narrow phone width the pages must fit without horizontal scrolling.
pub const PHONE_WIDTH: u32 = 360;

/// The least height of a saved screenshot, so that short pages share one size.
const SCREENSHOT_MIN_HEIGHT: u64 = 640;

/// The variable that makes `save_screenshot` write `docs/screenshots/`; unset (as on CI), a
/// test run leaves the checkout clean.
pub const SAVE_SCREENSHOTS_VARIABLE: &str = "LATCHKEY_SAVE_SCREENSHOTS";

/// One headless Chromium behind its own chromedriver.
pub struct Browser {
    driver: Child,
    session_url: String,
    session_id: String,
    driver_port: u16,
    browser_process_id: u32,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

/// A WebDriver error answer: its `error` code (`no such element`, ...) and message.
#[derive(Debug)]
pub struct WebDriverError {
    pub error: String,
    pub message: String,
}

/// One line of the browser's console (chromedriver's `browser` log).
#[derive(Debug, Clone)]
pub struct ConsoleEntry {
    pub level: String,
    pub source: String,
    pub message: String,
}

/// One element of the current page, as WebDriver names it.
pub struct Element<'browser> {
    browser: &'browser Browser,
    id: String,
}

/// One credential a virtual authenticator holds, as WebDriver's WebAuthn extension lists it
/// (binary values in base64url, as the API's JSON also carries them).
#[derive(Debug, Clone)]
pub struct VirtualCredential {
    pub credential_id: String,
    pub rp_id: String,
    /// Whether it is discoverable (a passkey the browser can offer without a user name).
    pub is_resident: bool,
    pub user_handle: Option<String>,
    pub sign_count: u64,
}

/// One cookie as the browser holds it.
#[derive(Debug, Clone)]
pub struct BrowserCookie {
    pub name: String,
    pub value: String,
    pub http_only: bool,
    pub same_site: Option<String>,
    pub path: Option<String>,
}

impl Browser {
    /// Starts chromedriver on a port it picks itself (no port is bound and released, so
    /// parallel tests cannot collide) and opens a headless session on a fresh profile.
    pub async fn start() -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut driver = Command::new(CHROMEDRIVER)
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            // Its own process group, so that drop can end the browser it started even when
            // the session could not be closed.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|error| panic!("{CHROMEDRIVER} does not start ({error}): run scripts/test, which installs chromium-driver"));
        let port_receiver = announce_port_of(&mut driver);
        let http = reqwest::Client::builder()
            .timeout(COMMAND_LIMIT)
            .build()
            .unwrap();
        let deadline = Instant::now() + START_LIMIT;
        let driver_port = loop {
            match port_receiver.try_recv() {
                Ok(port) => break port,
                Err(mpsc::TryRecvError::Empty) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(reason) => {
                    end_process_group(&mut driver);
                    panic!("chromedriver announced no port: {reason:?}");
                }
            }
        };
        let mut browser = Browser {
            driver,
            session_url: String::new(),
            session_id: String::new(),
            driver_port,
            browser_process_id: 0,
            http,
            _profile: profile,
        };
        browser.wait_until_driver_is_ready(deadline).await;
        browser.open_session().await;
        browser
    }

    /// Polls chromedriver's `/status` until it says it is ready, with a deadline.
    async fn wait_until_driver_is_ready(&self, deadline: Instant) {
        let status_url = format!("http://127.0.0.1:{}/status", self.driver_port);
        loop {
            if let Ok(response) = self.http.get(&status_url).send().await
                && let Ok(text) = response.text().await
                && serde_json::from_str::<Value>(&text)
                    .is_ok_and(|status| status["value"]["ready"] == Value::Bool(true))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver on port {} was not ready in time",
                self.driver_port
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn open_session(&mut self) {
        let profile_argument = format!("--user-data-dir={}", self._profile.path().display());
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:loggingPrefs": { "browser": "ALL" },
                    "goog:chromeOptions": {
                        "binary": CHROMIUM,
                        // Headless, and nothing that reaches the network on its own: the
                        // machine running the tests may have none.
                        "args": [
                            "--headless=new",
                            "--no-sandbox",
                            "--disable-gpu",
                            "--disable-dev-shm-usage",
                            "--disable-quic",
                            "--no-first-run",
                            "--disable-background-networking",
                            "--disable-component-update",
                            "--disable-sync",
                            "--disable-extensions",
                            "--disable-default-apps",
                            "--hide-scrollbars",
                            "--force-device-scale-factor=1",
                            profile_argument,
                        ],
                    },
                },
            },
        });
        let url = format!("http://127.0.0.1:{}/session", self.driver_port);
        let answer = send(&self.http, reqwest::Method::POST, &url, Some(&capabilities))
            .await
            .unwrap_or_else(|error| panic!("no WebDriver session: {error:?}"));
        self.session_id = answer["sessionId"].as_str().unwrap().to_owned();
        self.browser_process_id = answer["capabilities"]["goog:processID"]
            .as_u64()
            .and_then(|id| u32::try_from(id).ok())
            .unwrap_or(0);
        self.session_url = format!(
            "http://127.0.0.1:{}/session/{}",
            self.driver_port, self.session_id
        );
    }

    /// Sends one command of this session; `path` is relative to the session.
    pub async fn command(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, WebDriverError> {
        let url = format!("{}{path}", self.session_url);
        send(&self.http, method, &url, body).await
    }

    async fn get(&self, path: &str) -> Value {
        self.command(reqwest::Method::GET, path, None)
            .await
            .unwrap_or_else(|error| panic!("GET {path}: {error:?}"))
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.command(reqwest::Method::POST, path, Some(&body))
            .await
            .unwrap_or_else(|error| panic!("POST {path}: {error:?}"))
    }

    /// Opens `url` and returns once the page has loaded.
    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }

    pub async fn current_url(&self) -> String {
        self.get("/url").await.as_str().unwrap().to_owned()
    }

    pub async fn title(&self) -> String {
        self.get("/title").await.as_str().unwrap().to_owned()
    }

    /// The page's HTML as the browser holds it now.
    pub async fn page_source(&self) -> String {
        self.get("/source").await.as_str().unwrap().to_owned()
    }

    /// Resizes the window so the page's viewport is `width` CSS pixels wide.
    pub async fn set_window_size(&self, width: u32, height: u32) {
        self.post("/window/rect", json!({ "width": width, "height": height }))
            .await;
    }

    /// The first element matching the CSS `selector`; panics when there is none.
    pub async fn find(&self, selector: &str) -> Element<'_> {
        match self.try_find(selector).await {
            Some(element) => element,
            None => panic!(
                "no element matches `{selector}` on {}:\n{}",
                self.current_url().await,
                self.page_source().await
            ),
        }
    }

    /// The first element matching the CSS `selector`, if any.
    pub async fn try_find(&self, selector: &str) -> Option<Element<'_>> {
        let body = json!({ "using": "css selector", "value": selector });
        match self
            .command(reqwest::Method::POST, "/element", Some(&body))
            .await
        {
            Ok(answer) => Some(self.element_from(&answer)),
            Err(error) if error.error == "no such element" => None,
            Err(error) => panic!("finding `{selector}`: {error:?}"),
        }
    }

    /// Every element matching the CSS `selector`, in document order.
    pub async fn find_all(&self, selector: &str) -> Vec<Element<'_>> {
        let answer = self
            .post(
                "/elements",
                json!({ "using": "css selector", "value": selector }),
            )
            .await;
        answer
            .as_array()
            .unwrap()
            .iter()
            .map(|element| self.element_from(element))
            .collect()
    }

    fn element_from(&self, answer: &Value) -> Element<'_> {
        Element {
            browser: self,
            id: answer[ELEMENT_KEY].as_str().unwrap().to_owned(),
        }
    }

    /// Waits until an element matches `selector`, with a deadline.
    pub async fn wait_for(&self, selector: &str) -> Element<'_> {
        let deadline = Instant::now() + WAIT_LIMIT;
        loop {
            if let Some(element) = self.try_find(selector).await {
                return element;
            }
            if Instant::now() >= deadline {
                return self.find(selector).await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Replaces the text of the field matching `selector` with `text`.
    pub async fn fill(&self, selector: &str, text: &str) {
        let field = self.find(selector).await;
        field.clear().await;
        field.type_text(text).await;
    }

    /// Clicks the element matching `selector` (a submit button, a link) and waits until the
    /// page it leads to has replaced the current one and finished loading.
    pub async fn click_and_wait_for_page(&self, selector: &str) {
        let old_root = self.find("html").await;
        self.find(selector).await.click().await;
        let deadline = Instant::now() + WAIT_LIMIT;
        let mut last_error = None;
        loop {
            // While the browser swaps documents, a command may also fail in passing ("unknown
            // error", "no such execution context"): those are polled again until the deadline.
            let replaced = match self
                .command(
                    reqwest::Method::GET,
                    &format!("/element/{}/name", old_root.id),
                    None,
                )
                .await
            {
                Ok(_) => false,
                Err(error) if is_gone_from_the_document(&error) => true,
                Err(error) => {
                    last_error = Some(error);
                    false
                }
            };
            if replaced {
                let body = json!({ "script": "return document.readyState;", "args": [] });
                match self
                    .command(reqwest::Method::POST, "/execute/sync", Some(&body))
                    .await
                {
                    Ok(state) if state == "complete" => return,
                    Ok(_) => {}
                    Err(error) => last_error = Some(error),
                }
            }
            assert!(
                Instant::now() < deadline,
                "clicking `{selector}` led to no new page; still at {} (last error: {last_error:?})",
                self.current_url().await
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page and returns
    /// what it returns. WebDriver's scripts are not the page's: the CSP does not apply.
    pub async fn execute(&self, script: &str, args: Value) -> Value {
        self.post("/execute/sync", json!({ "script": script, "args": args }))
            .await
    }

    /// The text of the element matching `selector`, as rendered.
    pub async fn text_of(&self, selector: &str) -> String {
        self.find(selector).await.text().await
    }

    /// Every cookie the browser holds for the current page, `HttpOnly` ones included.
    pub async fn cookies(&self) -> Vec<BrowserCookie> {
        self.get("/cookie")
            .await
            .as_array()
            .unwrap()
            .iter()
            .map(|cookie| BrowserCookie {
                name: cookie["name"].as_str().unwrap().to_owned(),
                value: cookie["value"].as_str().unwrap().to_owned(),
                http_only: cookie["httpOnly"].as_bool().unwrap_or(false),
                same_site: cookie["sameSite"].as_str().map(str::to_owned),
                path: cookie["path"].as_str().map(str::to_owned),
            })
            .collect()
    }

    pub async fn cookie(&self, name: &str) -> Option<BrowserCookie> {
        self.cookies()
            .await
            .into_iter()
            .find(|cookie| cookie.name == name)
    }

    pub async fn delete_all_cookies(&self) {
        self.command(reqwest::Method::DELETE, "/cookie", None)
            .await
            .unwrap();
    }

    /// The page's width against its viewport's: wider means horizontal scrolling.
    pub async fn scroll_and_client_width(&self) -> (u64, u64) {
        let widths = self
            .execute(
                "return [document.documentElement.scrollWidth, \
                 document.documentElement.clientWidth];",
                json!([]),
            )
            .await;
        (widths[0].as_u64().unwrap(), widths[1].as_u64().unwrap())
    }

    /// Asserts the page fits a `PHONE_WIDTH` viewport without horizontal scrolling; the
    /// window is resized to it first and left so.
    pub async fn assert_fits_phone_width(&self, page: &str) {
        self.set_window_size(PHONE_WIDTH, 780).await;
        let (scroll_width, client_width) = self.scroll_and_client_width().await;
        assert_eq!(
            client_width,
            u64::from(PHONE_WIDTH),
            "the viewport is not {PHONE_WIDTH} px wide"
        );
        assert!(
            scroll_width <= client_width,
            "{page} scrolls sideways at {PHONE_WIDTH} px: it is {scroll_width} px wide"
        );
    }

    /// Makes the window tall enough to show the whole page (at least `SCREENSHOT_MIN_HEIGHT`
    /// CSS pixels of it), its width unchanged, so that a screenshot shows every part.
    pub async fn fit_window_height_to_page(&self) {
        let rect = self.get("/window/rect").await;
        let sizes = self
            .execute(
                "return [document.documentElement.scrollHeight, window.innerHeight];",
                json!([]),
            )
            .await;
        let page_height = sizes[0].as_u64().unwrap().max(SCREENSHOT_MIN_HEIGHT);
        let frame_height = rect["height"].as_u64().unwrap() - sizes[1].as_u64().unwrap();
        self.post(
            "/window/rect",
            json!({ "width": rect["width"], "height": page_height + frame_height }),
        )
        .await;
    }

    /// A PNG of the viewport.
    pub async fn screenshot_png(&self) -> Vec<u8> {
        let encoded = self.get("/screenshot").await;
        base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().unwrap())
            .unwrap()
    }

    /// Saves a PNG of the viewport as `docs/screenshots/{name}.png` when the environment
    /// asks for it (`SAVE_SCREENSHOTS_VARIABLE`); takes it either way, so the command is
    /// tested on every run.
    pub async fn save_screenshot(&self, name: &str) {
        self.fit_window_height_to_page().await;
        // The blinking caret of a focused field would make each run's picture differ.
        self.execute(
            "if (document.activeElement) document.activeElement.style.caretColor = 'transparent';",
            json!([]),
        )
        .await;
        let png = self.screenshot_png().await;
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
        if std::env::var_os(SAVE_SCREENSHOTS_VARIABLE).is_some_and(|value| value == "1") {
            let directory = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots");
            std::fs::create_dir_all(&directory).unwrap();
            std::fs::write(directory.join(format!("{name}.png")), png).unwrap();
        }
    }

    /// The console lines the browser logged since the last call (chromedriver hands each
    /// line out once).
    pub async fn take_console_log(&self) -> Vec<ConsoleEntry> {
        self.post("/se/log", json!({ "type": "browser" }))
            .await
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| ConsoleEntry {
                level: entry["level"].as_str().unwrap_or_default().to_owned(),
                source: entry["source"].as_str().unwrap_or_default().to_owned(),
                message: entry["message"].as_str().unwrap_or_default().to_owned(),
            })
            .collect()
    }

    /// Asserts the browser logged no error since the last look: no script error, no failed
    /// load and no Content-Security-Policy violation (which Chromium logs as errors; a
    /// report-only one as a warning, so any line naming the policy counts).
    ///
    /// One line is not a fault of the page: Chromium logs the document's own 4xx status
    /// ("Failed to load resource" for the URL it shows), which a form drawn again with its
    /// problem (a refused sign-in is a 401) answers on purpose; the HTTP tests check those
    /// statuses. Any other resource that fails (a stylesheet, a favicon) counts.
    pub async fn assert_no_console_errors(&self, page: &str) {
        let document_status_line =
            format!("{} - Failed to load resource", self.current_url().await);
        let problems: Vec<ConsoleEntry> = self
            .take_console_log()
            .await
            .into_iter()
            .filter(|entry| {
                entry.level == "SEVERE" || entry.message.contains("Content Security Policy")
            })
            .filter(|entry| {
                !(entry.source == "network" && entry.message.starts_with(&document_status_line))
            })
            .collect();
        assert!(
            problems.is_empty(),
            "{page} logged errors in the browser console:\n{problems:#?}"
        );
    }

    /// Adds a virtual WebAuthn authenticator to this session (W3C WebAuthn, "WebDriver
    /// Extensions"), like a phone's or laptop's own: CTAP2 over the internal transport, able
    /// to keep discoverable credentials and to verify its user, whose check (a fingerprint,
    /// a PIN) succeeds and is consented to until `set_user_verified` says otherwise.
    /// Returns its id. The browser's ceremonies use it instead of asking a person.
    pub async fn add_virtual_authenticator(&self) -> String {
        let options = json!({
            "protocol": "ctap2",
            "transport": "internal",
            "hasResidentKey": true,
            "hasUserVerification": true,
            "isUserConsenting": true,
            "isUserVerified": true,
        });
        self.post("/webauthn/authenticator", options)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Removes the virtual authenticator and every credential it holds.
    pub async fn remove_virtual_authenticator(&self, authenticator_id: &str) {
        self.command(
            reqwest::Method::DELETE,
            &format!("/webauthn/authenticator/{authenticator_id}"),
            None,
        )
        .await
        .unwrap_or_else(|error| panic!("removing authenticator {authenticator_id}: {error:?}"));
    }

    /// The credentials the virtual authenticator holds; an error for an unknown one.
    pub async fn virtual_credentials(
        &self,
        authenticator_id: &str,
    ) -> Result<Vec<VirtualCredential>, WebDriverError> {
        let answer = self
            .command(
                reqwest::Method::GET,
                &format!("/webauthn/authenticator/{authenticator_id}/credentials"),
                None,
            )
            .await?;
        Ok(answer
            .as_array()
            .unwrap()
            .iter()
            .map(|credential| VirtualCredential {
                credential_id: credential["credentialId"].as_str().unwrap().to_owned(),
                rp_id: credential["rpId"].as_str().unwrap_or_default().to_owned(),
                is_resident: credential["isResidentCredential"].as_bool().unwrap(),
                user_handle: credential["userHandle"].as_str().map(str::to_owned),
                sign_count: credential["signCount"].as_u64().unwrap_or(0),
            })
            .collect())
    }

    /// Whether the virtual authenticator's user check succeeds from now on: `false` makes
    /// a ceremony that requires user verification fail, as a wrong fingerprint would.
    pub async fn set_user_verified(&self, authenticator_id: &str, verified: bool) {
        self.post(
            &format!("/webauthn/authenticator/{authenticator_id}/uv"),
            json!({ "isUserVerified": verified }),
        )
        .await;
    }

    /// Ends the session and chromedriver now (what drop does anyway).
    pub fn close(self) {}

    /// The process ids of chromedriver and of the browser's main process, to check teardown.
    pub fn process_ids(&self) -> [u32; 2] {
        [self.driver.id(), self.browser_process_id]
    }
}

impl Drop for Browser {
    /// Closes the session (which ends the browser) with a plain blocking request, since drop
    /// cannot await, then ends chromedriver's whole process group, which takes with it any
    /// browser process a failed close left.
    fn drop(&mut self) {
        if !self.session_id.is_empty() {
            let _ = delete_session_blocking(self.driver_port, &self.session_id);
        }
        end_process_group(&mut self.driver);
    }
}

impl Element<'_> {
    fn path(&self, command: &str) -> String {
        format!("/element/{}/{command}", self.id)
    }

    pub async fn text(&self) -> String {
        self.browser
            .get(&self.path("text"))
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// The attribute as written in the HTML, if present.
    pub async fn attribute(&self, name: &str) -> Option<String> {
        self.browser
            .get(&self.path(&format!("attribute/{name}")))
            .await
            .as_str()
            .map(str::to_owned)
    }

    /// The DOM property (a field's current `value`, `checked`, ...).
    pub async fn property(&self, name: &str) -> Value {
        self.browser
            .get(&self.path(&format!("property/{name}")))
            .await
    }

    pub async fn click(&self) {
        self.browser.post(&self.path("click"), json!({})).await;
    }

    pub async fn clear(&self) {
        self.browser.post(&self.path("clear"), json!({})).await;
    }

    /// Types `text` into the element as keystrokes.
    pub async fn type_text(&self, text: &str) {
        self.browser
            .post(&self.path("value"), json!({ "text": text }))
            .await;
    }

    /// Whether this element has the keyboard focus.
    pub async fn is_focused(&self) -> bool {
        let element = json!({ ELEMENT_KEY: self.id });
        self.browser
            .execute(
                "return document.activeElement === arguments[0];",
                json!([element]),
            )
            .await
            == Value::Bool(true)
    }
}

/// Whether a command on an element failed because its document is gone (the page was
/// replaced), as chromedriver words it in its several ways.
fn is_gone_from_the_document(error: &WebDriverError) -> bool {
    error.error == "stale element reference"
        || error.error == "no such element"
        || error.message.contains("does not belong to the document")
}

/// Sends one WebDriver command and unwraps its `value`, or its error.
async fn send(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<&Value>,
) -> Result<Value, WebDriverError> {
    let mut request = http.request(method, url);
    if let Some(body) = body {
        request = request
            .header("Content-Type", "application/json")
            .body(serde_json::to_vec(body).unwrap());
    }
    let response = request.send().await.map_err(|error| WebDriverError {
        error: "no answer".to_owned(),
        message: error.to_string(),
    })?;
    let text = response.text().await.map_err(|error| WebDriverError {
        error: "unreadable answer".to_owned(),
        message: error.to_string(),
    })?;
    let mut answer: Value = serde_json::from_str(&text).map_err(|error| WebDriverError {
        error: "not JSON".to_owned(),
        message: format!("{error}: {text}"),
    })?;
    let value = answer["value"].take();
    match value["error"].as_str() {
        Some(error) => Err(WebDriverError {
            error: error.to_owned(),
            message: value["message"].as_str().unwrap_or_default().to_owned(),
        }),
        None => Ok(value),
    }
}

/// Reads chromedriver's standard output on a thread of its own: the port it announces goes
/// to the receiver, and the rest is drained so its pipe never fills.
fn announce_port_of(driver: &mut Child) -> mpsc::Receiver<u16> {
    let (port_sender, port_receiver) = mpsc::channel();
    let stdout = driver.stdout.take().unwrap();
    std::thread::spawn(move || {
        let marker = "started successfully on port ";
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if let Some(start) = line.find(marker) {
                let digits: String = line[start + marker.len()..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                if let Ok(port) = digits.parse() {
                    let _ = port_sender.send(port);
                }
            }
        }
    });
    port_receiver
}

/// `DELETE /session/{id}` over a plain TCP stream with timeouts; chromedriver quits the
/// browser before it answers.
fn delete_session_blocking(port: u16, session_id: &str) -> std::io::Result<()> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "DELETE /session/{session_id} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Connection: close\r\nContent-Length: 0\r\n\r\n"
    )?;
    // chromedriver keeps the connection open after its answer: read the answer's head and
    // its `Content-Length` bytes, not to the end of the stream.
    let mut answer = Vec::new();
    let mut buffer = [0_u8; 1024];
    loop {
        let read = stream.read(&mut buffer)?;
        if read == 0 {
            return Ok(());
        }
        answer.extend_from_slice(&buffer[..read]);
        let text = String::from_utf8_lossy(&answer);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .filter_map(|line| line.split_once(':'))
                .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, value)| value.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= length {
                return Ok(());
            }
        }
    }
}

/// Kills chromedriver's process group (chromedriver and any browser process still in it)
/// and reaps chromedriver.
fn end_process_group(driver: &mut Child) {
    let group = rustix::process::Pid::from_child(driver);
    let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
    let _ = driver.kill();
    let _ = driver.wait();
}
