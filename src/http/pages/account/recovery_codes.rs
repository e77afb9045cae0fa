//! The recovery codes, shown once: the answer to confirming an authenticator app and to
//! "Make new recovery codes" (API.md section 10). The store keeps only their hashes, so no
//! page can show them again; the page says so.

use askama::Template;
use hyper::StatusCode;

use crate::http::Api;
use crate::http::error::ApiError;
use crate::http::pages::render::{Layout, Problem, html_page};
use crate::http::response::Response;
use crate::model::Secret;

#[derive(Template)]
#[template(path = "account_recovery_codes.html")]
struct RecoveryCodesPage {
    layout: Layout,
    problem: Option<Problem>,
    codes: Vec<String>,
    replaced: bool,
}

/// Draws the new recovery codes, this once: those of a newly confirmed authenticator app,
/// or (`replacing_earlier_codes`) the ones that replace the account's earlier codes.
#[expect(
    dead_code,
    reason = "drawn by the TOTP forms' handlers once the TOTP use cases are merged (#19)"
)]
pub fn draw_recovery_codes(
    api: &Api,
    codes: &[Secret<String>],
    replacing_earlier_codes: bool,
) -> Result<Response, ApiError> {
    let heading = if replacing_earlier_codes {
        "Your new recovery codes"
    } else {
        "Your authenticator app is on"
    };
    let page = RecoveryCodesPage {
        layout: Layout::new(api, heading),
        problem: None,
        codes: codes
            .iter()
            .map(|code| code.expose_secret().clone())
            .collect(),
        replaced: replacing_earlier_codes,
    };
    html_page(api, StatusCode::OK, &page, None, &[])
}

#[cfg(test)]
mod tests {
    use askama::Template;

    use super::RecoveryCodesPage;
    use crate::http::pages::render::Layout;

    fn page(replaced: bool) -> String {
        RecoveryCodesPage {
            layout: Layout {
                product: "Latchkey".to_owned(),
                heading: "Your new recovery codes".to_owned(),
                stylesheet_url: "/assets/latchkey.css?v=0".to_owned(),
                operator_stylesheet_url: None,
                passkey_script_url: None,
            },
            problem: None,
            codes: (1..=10).map(|index| format!("code-{index:02}")).collect(),
            replaced,
        }
        .render()
        .unwrap()
    }

    #[test]
    fn every_code_is_listed_once_with_the_note_to_save_them() {
        let html = page(false);
        for index in 1..=10 {
            assert_eq!(
                html.matches(&format!("<code>code-{index:02}</code>"))
                    .count(),
                1
            );
        }
        assert!(html.contains("shown only this once"), "{html}");
        assert!(!html.contains("no longer work"));
        assert!(!html.contains("<form"));
        assert!(html.contains("href=\"/account#second-factors\""));
    }

    #[test]
    fn replaced_codes_say_the_old_ones_stopped_working() {
        assert!(page(true).contains("Your earlier recovery codes no longer work."));
    }
}
