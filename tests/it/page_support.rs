//! What the hosted-page tests share: a small cookie-keeping `PageBrowser` that stands in for
//! a real one (the browser tests drive Chromium), and the form helpers that read a page's
//! hidden fields, CSRF token and form action.

use std::collections::BTreeMap;

use crate::support::{PASSWORD, TestRequest, TestResponse, TestServer, page_request_to};

/// Keeps the cookies a server sets, sends them back, and names the server's origin on
/// every POST, as a browser does for a page of that origin.
pub struct PageBrowser<'a> {
    pub server: &'a TestServer,
    pub cookies: BTreeMap<String, String>,
}

impl<'a> PageBrowser<'a> {
    pub fn new(server: &'a TestServer) -> PageBrowser<'a> {
        PageBrowser {
            server,
            cookies: BTreeMap::new(),
        }
    }

    /// A browser signed in through the `/sign-in` page.
    pub async fn signed_in(server: &'a TestServer, email: &str) -> PageBrowser<'a> {
        let mut browser = PageBrowser::new(server);
        let page = browser.get("/sign-in").await;
        let token = csrf_token(&page.text());
        let signed_in = browser
            .post(
                "/sign-in",
                &[
                    ("csrf-token", &token),
                    ("email", email),
                    ("password", PASSWORD),
                ],
            )
            .await;
        assert_eq!(signed_in.status, 303, "{}", signed_in.text());
        assert!(browser.cookies.contains_key("jwt"));
        browser
    }

    /// A request to the server carrying the kept cookies.
    pub fn request(&self, method: &str, path: &str) -> TestRequest {
        let request = page_request_to(self.server.address, method, path);
        if self.cookies.is_empty() {
            return request;
        }
        let cookie = self
            .cookies
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ");
        request.header("Cookie", &cookie)
    }

    pub fn keep_cookies(&mut self, response: &TestResponse) {
        for (name, value) in &response.headers {
            if name != "set-cookie" {
                continue;
            }
            let pair = value.split(';').next().unwrap();
            let (cookie, cookie_value) = pair.split_once('=').unwrap();
            if value.contains("Max-Age=0") {
                self.cookies.remove(cookie);
            } else {
                self.cookies
                    .insert(cookie.to_owned(), cookie_value.to_owned());
            }
        }
    }

    pub async fn get(&mut self, path: &str) -> TestResponse {
        let response = self.request("GET", path).send().await;
        self.keep_cookies(&response);
        response
    }

    /// A form POST naming `origin` (or no origin at all).
    pub async fn post_from(
        &mut self,
        origin: Option<&str>,
        path: &str,
        pairs: &[(&str, &str)],
    ) -> TestResponse {
        let mut request = self.request("POST", path);
        if let Some(origin) = origin {
            request = request.header("Origin", origin);
        }
        let response = request.form(pairs).send().await;
        self.keep_cookies(&response);
        response
    }

    pub async fn post(&mut self, path: &str, pairs: &[(&str, &str)]) -> TestResponse {
        let origin = self.server.origin();
        self.post_from(Some(&origin), path, pairs).await
    }

    /// Opens `page`, fills its form's hidden fields and `filled`, and sends it.
    pub async fn submit(&mut self, page: &str, filled: &[(&str, &str)]) -> TestResponse {
        let shown = self.get(page).await;
        assert_eq!(shown.status, 200, "{}", shown.text());
        let html = shown.text();
        let mut pairs: Vec<(String, String)> = hidden_fields(&html);
        pairs.extend(
            filled
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned())),
        );
        let pairs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        let action = form_action(&html);
        self.post(&action, &pairs).await
    }

    /// The session's signed token from the `jwt` cookie, if signed in.
    pub fn session_token(&self) -> Option<&str> {
        self.cookies.get("jwt").map(String::as_str)
    }
}

/// The value of an attribute in one tag's text.
pub fn attribute(tag: &str, name: &str) -> Option<String> {
    let marker = format!(" {name}=\"");
    let tag = format!(" {tag}");
    let start = tag.find(&marker)? + marker.len();
    Some(tag[start..].split('"').next()?.replace("&#38;", "&"))
}

/// The tags of one kind in a page, each as its text up to `>`.
pub fn tags<'a>(html: &'a str, kind: &str) -> Vec<&'a str> {
    html.split(&format!("<{kind} "))
        .skip(1)
        .map(|rest| rest.split('>').next().unwrap())
        .collect()
}

/// Every hidden input's name and value, in page order.
pub fn hidden_fields(html: &str) -> Vec<(String, String)> {
    tags(html, "input")
        .into_iter()
        .filter(|tag| tag.contains("type=\"hidden\""))
        .map(|tag| {
            (
                attribute(tag, "name").unwrap(),
                attribute(tag, "value").unwrap_or_default(),
            )
        })
        .collect()
}

/// The action of the page's only form.
pub fn form_action(html: &str) -> String {
    let forms = tags(html, "form");
    assert_eq!(forms.len(), 1, "{html}");
    attribute(forms[0], "action").unwrap()
}

/// The first `csrf-token` hidden field's value.
pub fn csrf_token(html: &str) -> String {
    hidden_fields(html)
        .into_iter()
        .find(|(name, _)| name == "csrf-token")
        .map(|(_, value)| value)
        .unwrap_or_else(|| panic!("no csrf-token field in {html}"))
}
