//! `GET, POST /sign-in/second-factor`: the second step of a sign-in (API.md section 10). The
//! page draws a form for an authenticator code, one for a recovery code and the passkey
//! button (`assets/passkey.js`), each only for a method the account has, all carrying the
//! pending sign-in's `mfa-token` and `ret-url`. Until the second-factor use cases are wired
//! in, no sign-in waits here: the page says so and its one form leads back to sign-in.

use askama::Template;

use crate::http::Api;
use crate::http::error::ApiError;
use crate::http::pages::csrf::BrowserBinding;
use crate::http::pages::form::read_checked_form;
use crate::http::pages::render::{self, Layout, Problem, html_page};
use crate::http::pages::sign_in::DEFAULT_DESTINATION;
use crate::http::pages::{Pages, page_identity};
use crate::http::request::Request;
use crate::http::response::Response;

/// The second factors an account can finish a sign-in with, as the second-factor answer's
/// `methods` lists them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SecondFactorMethods {
    pub totp: bool,
    pub recovery_code: bool,
    pub passkey: bool,
}

/// The pending sign-in the page finishes.
#[derive(Debug)]
pub struct PendingSignIn {
    /// The `mfa-token` of the password step's 403, carried by every form and the script.
    pub mfa_token: String,
    /// The sign-in's `ret-url`, already checked by the ret-url rule.
    pub return_url: Option<String>,
    pub methods: SecondFactorMethods,
}

#[derive(Template)]
#[template(path = "second_factor.html")]
struct SecondFactorPage {
    layout: Layout,
    problem: Option<Problem>,
    csrf_token: String,
    /// `None`: no sign-in waits for a second step; the page says so.
    pending: Option<PendingSignIn>,
    /// Where the passkey script goes once signed in: `ret-url`, else `/account`.
    destination: String,
}

impl SecondFactorPage {
    /// Whether `field` gets the focus: the field to blame, else the first form's field.
    fn focuses(&self, field: &str) -> bool {
        let first = match &self.pending {
            Some(pending) if pending.methods.totp => "code",
            Some(pending) if pending.methods.recovery_code && !pending.methods.passkey => {
                "recovery-code"
            }
            _ => "",
        };
        Problem::focuses(self.problem.as_ref(), field, first)
    }

    fn blames(&self, field: &str) -> bool {
        Problem::blames(self.problem.as_ref(), field)
    }
}

/// Draws the page for `pending` (or for no pending sign-in), with `error`'s problem and
/// status when drawn again after a refused code.
fn draw(
    api: &Api,
    pages: &Pages,
    request: &Request,
    pending: Option<PendingSignIn>,
    error: Option<&ApiError>,
) -> Result<Response, ApiError> {
    let identity = page_identity(api, request)?;
    let browser = BrowserBinding::read_or_start(api, &request.parts)?;
    let mut layout = Layout::new(api, "Second step");
    if pending
        .as_ref()
        .is_some_and(|pending| pending.methods.passkey)
    {
        layout = layout.with_passkey_script(api);
    }
    let destination = pending
        .as_ref()
        .and_then(|pending| pending.return_url.clone())
        .unwrap_or_else(|| DEFAULT_DESTINATION.to_owned());
    let page = SecondFactorPage {
        layout,
        problem: error.map(Problem::from_error),
        csrf_token: browser.form_token(&pages.csrf_key, identity.as_ref()),
        pending,
        destination,
    };
    let response = html_page(api, render::form_status(error), &page, Some(&browser), &[])?;
    Ok(render::with_retry_after(response, error))
}

/// `GET /sign-in/second-factor`.
pub fn show(api: &Api, pages: &Pages, request: &Request) -> Result<Response, ApiError> {
    draw(api, pages, request, None, None)
}

/// `POST /sign-in/second-factor`: checked like every page form, then back to sign-in.
pub async fn submit(api: &Api, pages: &Pages, request: &mut Request) -> Result<Response, ApiError> {
    let identity = page_identity(api, request)?;
    read_checked_form(api, pages, request, identity.as_ref()).await?;
    render::redirect("/sign-in")
}

#[cfg(test)]
mod tests {
    use askama::Template;

    use super::{PendingSignIn, SecondFactorMethods, SecondFactorPage};
    use crate::http::pages::render::{Layout, Problem};

    fn layout() -> Layout {
        Layout {
            product: "Latchkey".to_owned(),
            heading: "Second step".to_owned(),
            stylesheet_url: "/assets/latchkey.css?v=0".to_owned(),
            operator_stylesheet_url: None,
            passkey_script_url: Some("/assets/passkey.js?v=0".to_owned()),
        }
    }

    fn page(methods: SecondFactorMethods, problem: Option<Problem>) -> String {
        SecondFactorPage {
            layout: layout(),
            problem,
            csrf_token: "form-token".to_owned(),
            pending: Some(PendingSignIn {
                mfa_token: "the-mfa-token".to_owned(),
                return_url: Some("/after?x=1&y=2".to_owned()),
                methods,
            }),
            destination: "/after?x=1&y=2".to_owned(),
        }
        .render()
        .unwrap()
    }

    /// The forms of `html`, each as its markup.
    fn forms(html: &str) -> Vec<&str> {
        html.split("<form ")
            .skip(1)
            .map(|form| form.split("</form>").next().unwrap())
            .collect()
    }

    #[test]
    fn each_method_the_account_has_gets_its_own_form_carrying_the_pending_sign_in() {
        let all = SecondFactorMethods {
            totp: true,
            recovery_code: true,
            passkey: true,
        };
        let html = page(all, None);
        let forms = forms(&html);
        assert_eq!(forms.len(), 2, "{html}");
        for form in &forms {
            assert!(form.contains("action=\"/sign-in/second-factor\""), "{form}");
            assert_eq!(form.matches("<button").count(), 1, "{form}");
            assert!(form.contains("name=\"csrf-token\" value=\"form-token\""));
            assert!(form.contains("name=\"mfa-token\" value=\"the-mfa-token\""));
            assert!(
                form.contains("name=\"ret-url\" value=\"/after?x=1&#38;y=2\""),
                "{form}"
            );
        }
        let code = forms[0];
        assert!(code.contains("name=\"code\""), "{code}");
        assert!(code.contains("autocomplete=\"one-time-code\""), "{code}");
        assert!(code.contains("inputmode=\"numeric\""), "{code}");
        assert!(code.contains(" autofocus"), "{code}");
        assert!(forms[1].contains("name=\"recovery-code\""));
        // The passkey button is outside the forms, hidden until the script shows it.
        assert!(html.contains("data-passkey-second-factor data-mfa-token=\"the-mfa-token\""));
        assert!(
            html.contains("data-return-url=\"/after?x=1&#38;y=2\""),
            "{html}"
        );
        assert!(
            html.contains("<button type=\"button\" data-passkey-button>Use a passkey</button>")
        );
        assert!(html.contains("<script src=\"/assets/passkey.js?v=0\" defer></script>"));
    }

    #[test]
    fn a_method_the_account_lacks_is_not_offered() {
        let passkey_only = SecondFactorMethods {
            passkey: true,
            ..SecondFactorMethods::default()
        };
        let html = page(passkey_only, None);
        assert!(forms(&html).is_empty(), "{html}");
        assert!(html.contains("data-passkey-second-factor"));
        let totp_only = SecondFactorMethods {
            totp: true,
            ..SecondFactorMethods::default()
        };
        let html = page(totp_only, None);
        assert_eq!(forms(&html).len(), 1);
        assert!(!html.contains("recovery-code"));
        assert!(!html.contains("data-passkey"));
    }

    #[test]
    fn a_refused_code_is_blamed_and_focused() {
        let methods = SecondFactorMethods {
            totp: true,
            recovery_code: true,
            passkey: false,
        };
        let problem = Problem {
            message: "That code is not right.".to_owned(),
            field: Some("recovery-code".to_owned()),
        };
        let html = page(methods, Some(problem));
        let forms = forms(&html);
        assert!(!forms[0].contains("autofocus"), "{}", forms[0]);
        assert!(forms[1].contains("aria-invalid=\"true\""), "{}", forms[1]);
        assert!(forms[1].contains(" autofocus"), "{}", forms[1]);
        assert!(html.contains("role=\"alert\">That code is not right.</p>"));
    }
}
