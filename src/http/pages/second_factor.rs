//! `GET, POST /sign-in/second-factor`: the second step of a sign-in (API.md section 10).
//! A password sign-in on `/sign-in` that meets a second factor answers this page at once
//! (no session, no cookie): a form for an authenticator code, one for a recovery code and
//! the passkey button (`assets/passkey.js`), each only for a method the account has, all
//! carrying the pending sign-in's `mfa-token` and checked `ret-url` in the body, never in a
//! URL. Its forms post here, are checked like every page form, and finish the sign-in
//! through the same audited `complete_sign_in` as `POST /auth/sign-in/second-factor`.
//! Opened without a pending sign-in, the page says that none waits.

use askama::Template;

use crate::auth::second_factor::{PresentedSecondFactor, SecondFactorMethod, SecondFactorSignIn};
use crate::http::Api;
use crate::http::error::ApiError;
use crate::http::fields::Fields;
use crate::http::handlers::second_factor::audited_complete_sign_in;
use crate::http::handlers::sign_in::checked_return_url;
use crate::http::pages::csrf::BrowserBinding;
use crate::http::pages::form::read_page_form;
use crate::http::pages::render::{self, Layout, Problem, html_page};
use crate::http::pages::sign_in::{self, DEFAULT_DESTINATION};
use crate::http::pages::{PageRoute, Pages, page_identity};
use crate::http::request::Request;
use crate::http::response::{Response, append_session_cookie};
use crate::model::Secret;
use crate::model::net::Origin;

/// The second factors an account can finish a sign-in with, as the second-factor answer's
/// `methods` lists them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SecondFactorMethods {
    pub totp: bool,
    pub recovery_code: bool,
    pub passkey: bool,
}

impl SecondFactorMethods {
    /// The methods named as the 403's `methods` names them.
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> SecondFactorMethods {
        let mut methods = SecondFactorMethods::default();
        for name in names {
            if name == SecondFactorMethod::Totp.name() {
                methods.totp = true;
            } else if name == SecondFactorMethod::RecoveryCode.name() {
                methods.recovery_code = true;
            } else if name == SecondFactorMethod::Passkey.name() {
                methods.passkey = true;
            }
        }
        methods
    }
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

/// Draws the page for `pending` (or for no pending sign-in), with `error`'s problem,
/// status and `Retry-After` when drawn again after a refused code.
pub async fn draw(
    api: &Api,
    pages: &Pages,
    request: &Request,
    pending: Option<PendingSignIn>,
    error: Option<&ApiError>,
) -> Result<Response, ApiError> {
    let identity = page_identity(api, request).await?;
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
    // A form here may finish with a redirect to any allowed return origin.
    let form_origins: &[Origin] = if pending.is_some() {
        &api.app.config.auth.allowed_return_origins
    } else {
        &[]
    };
    let page = SecondFactorPage {
        layout,
        problem: error.map(Problem::from_error),
        csrf_token: browser.form_token(&pages.csrf_key, identity.as_ref()),
        pending,
        destination,
    };
    let response = html_page(
        api,
        render::form_status(error),
        &page,
        Some(&browser),
        form_origins,
    )?;
    Ok(render::with_retry_after(response, error))
}

/// `GET /sign-in/second-factor`: no sign-in is pending on a bare visit (the mfa-token never
/// travels in a URL).
pub async fn show(api: &Api, pages: &Pages, request: &Request) -> Result<Response, ApiError> {
    draw(api, pages, request, None, None).await
}

/// `POST /sign-in/second-factor`: the code or recovery code form. Checked like every page
/// form; success sets the `jwt` cookie as the sign-in page does and 303s to `ret-url`, else
/// `/account`; a refused code draws the page again while the sign-in still waits; a sign-in
/// that no longer waits goes back to the sign-in page, told why.
pub async fn submit(api: &Api, pages: &Pages, request: &mut Request) -> Result<Response, ApiError> {
    let identity = page_identity(api, request).await?;
    let form = read_page_form(api, pages, request, identity.as_ref()).await?;
    let (fields, expired) = form.fields_and_expired();
    let Some(mfa_token) = fields
        .string("mfa-token")?
        .filter(|token| !token.is_empty())
    else {
        // The "nothing waiting" page's one form, or a form without its sign-in.
        if expired {
            return Err(ApiError::FormTokenInvalid);
        }
        return render::redirect(PageRoute::SignIn.path());
    };
    let mfa_token = Secret::new(mfa_token);
    let return_url = checked_return_url(api, fields.string("ret-url")?)?;
    if expired {
        return draw_again(
            api,
            pages,
            request,
            mfa_token,
            return_url,
            &ApiError::FormTokenInvalid,
        )
        .await;
    }
    let presented = match presented_second_factor(&fields) {
        Ok(presented) => presented,
        Err(error) => return draw_again(api, pages, request, mfa_token, return_url, &error).await,
    };
    let signed_in = audited_complete_sign_in(
        api,
        SecondFactorSignIn {
            mfa_token: Secret::new(mfa_token.expose_secret().clone()),
            presented,
            client: request.client_info(api),
        },
    )
    .await;
    match signed_in {
        Ok(signed_in) => {
            let outcome = signed_in.outcome;
            let max_age = outcome.session.expire - outcome.session.created;
            let mut response =
                render::redirect(return_url.as_deref().unwrap_or(DEFAULT_DESTINATION))?;
            append_session_cookie(
                &mut response,
                api,
                outcome.signed_token.expose_secret(),
                max_age,
            );
            Ok(response)
        }
        Err(error) => draw_again(api, pages, request, mfa_token, return_url, &error).await,
    }
}

/// The code or recovery code the form sent: an empty field counts as absent.
fn presented_second_factor(fields: &Fields) -> Result<PresentedSecondFactor, ApiError> {
    let code = fields.string("code")?.filter(|code| !code.is_empty());
    let recovery_code = fields
        .string("recovery-code")?
        .filter(|code| !code.is_empty());
    match (code, recovery_code) {
        (Some(code), _) => Ok(PresentedSecondFactor::Code(Secret::new(code))),
        (None, Some(recovery_code)) => Ok(PresentedSecondFactor::RecoveryCode(Secret::new(
            recovery_code,
        ))),
        (None, None) => {
            let field = if fields.string("recovery-code")?.is_some() {
                "recovery-code"
            } else {
                "code"
            };
            Err(ApiError::invalid_field(field, "is required"))
        }
    }
}

/// The page again with `error`, for the sign-in still waiting on `mfa_token` (its methods
/// read afresh: a spent recovery code may have been the last); the sign-in page, told why,
/// once the token is dead (expired, used, or too many wrong codes).
async fn draw_again(
    api: &Api,
    pages: &Pages,
    request: &Request,
    mfa_token: Secret<String>,
    return_url: Option<String>,
    error: &ApiError,
) -> Result<Response, ApiError> {
    let methods = match error {
        ApiError::InvalidMfaToken => None,
        _ => crate::auth::second_factor::pending_sign_in_methods(&api.app, &mfa_token).await?,
    };
    let Some(methods) = methods else {
        return sign_in::draw_after_dead_second_step(api, pages, request, return_url);
    };
    let pending = PendingSignIn {
        mfa_token: mfa_token.into_exposed_secret(),
        return_url,
        methods: SecondFactorMethods::from_names(methods.into_iter().map(SecondFactorMethod::name)),
    };
    draw(api, pages, request, Some(pending), Some(error)).await
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
