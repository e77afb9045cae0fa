//! The authenticator-app (TOTP) enrolment page, drawn as the answer to the account page's
//! "Set up an authenticator app" form once the secret is pending (API.md section 10): the
//! `otpauth://` URI as a QR code drawn here (`qr_code.rs`), the same secret in groups of
//! four for typing, a link that opens an authenticator app on this device, and the form
//! that confirms a first code (`/account/totp/confirm`). Drawn again, with its problem,
//! when that code is refused.

use askama::Template;

use crate::auth::Identity;
use crate::auth::second_factor::TotpEnrolment;
use crate::http::Api;
use crate::http::error::ApiError;
use crate::http::pages::Pages;
use crate::http::pages::csrf::BrowserBinding;
use crate::http::pages::qr_code::qr_code_svg;
use crate::http::pages::render::{Layout, Problem, form_page};
use crate::http::request::Request;
use crate::http::response::Response;

/// What the QR code says to a screen reader.
const QR_CODE_TEXT_ALTERNATIVE: &str =
    "QR code of your new authenticator key. If you cannot scan it, type the key written below.";

#[derive(Template)]
#[template(path = "account_totp.html")]
struct TotpEnrolmentPage {
    layout: Layout,
    problem: Option<Problem>,
    csrf_token: String,
    /// The inline `<svg>`, drawn here from the URI: markup, not text.
    qr_code_svg: String,
    /// The secret in groups of four, as it is typed.
    secret_for_typing: String,
    otpauth_uri: String,
}

impl TotpEnrolmentPage {
    fn blames(&self, field: &str) -> bool {
        Problem::blames(self.problem.as_ref(), field)
    }
}

/// Draws the enrolment page for a pending secret, first or again with `error`'s problem
/// (a refused code) and status.
pub fn draw_enrolment(
    api: &Api,
    pages: &Pages,
    request: &Request,
    identity: &Identity,
    pending: &TotpEnrolment,
    error: Option<&ApiError>,
) -> Result<Response, ApiError> {
    let browser = BrowserBinding::read_or_start(api, &request.parts)?;
    let otpauth_uri = pending.otpauth_uri.expose_secret();
    let page = TotpEnrolmentPage {
        layout: Layout::new(api, "Set up your authenticator app"),
        problem: error.map(Problem::from_error),
        csrf_token: browser.form_token(&pages.csrf_key, Some(identity)),
        qr_code_svg: qr_code_svg(otpauth_uri, QR_CODE_TEXT_ALTERNATIVE)?,
        secret_for_typing: secret_for_typing(pending.secret.expose_secret()),
        otpauth_uri: otpauth_uri.clone(),
    };
    form_page(api, &page, &browser, error, &[])
}

/// The secret in groups of four characters, as people type it from a screen; authenticator
/// apps ignore the spaces.
pub fn secret_for_typing(secret: &str) -> String {
    let characters: Vec<char> = secret.chars().filter(|c| !c.is_whitespace()).collect();
    characters
        .chunks(4)
        .map(|group| group.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use askama::Template;

    use super::{QR_CODE_TEXT_ALTERNATIVE, TotpEnrolmentPage, secret_for_typing};
    use crate::http::pages::qr_code::qr_code_svg;
    use crate::http::pages::render::{Layout, Problem};

    const SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
    const URI: &str = "otpauth://totp/Latchkey:ada%40example.com?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=Latchkey";

    fn page(problem: Option<Problem>) -> String {
        TotpEnrolmentPage {
            layout: Layout {
                product: "Latchkey".to_owned(),
                heading: "Set up your authenticator app".to_owned(),
                stylesheet_url: "/assets/latchkey.css?v=0".to_owned(),
                operator_stylesheet_url: None,
                passkey_script_url: None,
            },
            problem,
            csrf_token: "form-token".to_owned(),
            qr_code_svg: qr_code_svg(URI, QR_CODE_TEXT_ALTERNATIVE).unwrap(),
            secret_for_typing: secret_for_typing(SECRET),
            otpauth_uri: URI.to_owned(),
        }
        .render()
        .unwrap()
    }

    #[test]
    fn a_160_bit_secret_reads_in_eight_groups_of_four() {
        assert_eq!(
            secret_for_typing(SECRET),
            "JBSW Y3DP EHPK 3PXP JBSW Y3DP EHPK 3PXP"
        );
        assert_eq!(secret_for_typing("ABCDEF"), "ABCD EF");
        assert_eq!(secret_for_typing(""), "");
    }

    #[test]
    fn the_page_shows_the_code_as_markup_the_key_for_typing_and_one_confirm_form() {
        let html = page(None);
        // The SVG is the page's own markup, not escaped text and not an image URL.
        assert!(html.contains("<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"qr-code\""));
        assert!(!html.contains("&lt;svg"));
        assert!(!html.contains("<img"));
        assert!(html.contains("JBSW Y3DP EHPK 3PXP JBSW Y3DP EHPK 3PXP"));
        // The link to an app on this device, its `&` escaped as HTML asks.
        assert!(html.contains("href=\"otpauth://totp/Latchkey:ada%40example.com?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&#38;issuer=Latchkey\""), "{html}");
        let forms: Vec<&str> = html.split("<form ").skip(1).collect();
        assert_eq!(forms.len(), 1);
        let form = forms[0].split("</form>").next().unwrap();
        assert!(form.contains("action=\"/account/totp/confirm\""));
        assert_eq!(form.matches("<button").count(), 1);
        assert!(form.contains("name=\"csrf-token\" value=\"form-token\""));
        assert!(form.contains("name=\"code\""));
        assert!(form.contains("autocomplete=\"one-time-code\""));
        assert!(form.contains("inputmode=\"numeric\""));
        // The secret never goes into a form.
        assert!(!form.contains(SECRET));
    }

    #[test]
    fn a_refused_code_is_told_and_blamed() {
        let problem = Problem {
            message: "That code is not right.".to_owned(),
            field: Some("code".to_owned()),
        };
        let html = page(Some(problem));
        assert!(html.contains("role=\"alert\">That code is not right.</p>"));
        assert!(html.contains("aria-invalid=\"true\""));
    }
}
