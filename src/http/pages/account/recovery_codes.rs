//! The recovery codes, shown once: the answer to confirming an authenticator app and to
//! "Make new recovery codes" (API.md section 10). The store keeps only their hashes, so no
//! page can show them again; the page says so.

use askama::Template;
use hyper::{Method, StatusCode};

use crate::auth::password::Password;
use crate::auth::second_factor;
use crate::http::Api;
use crate::http::error::ApiError;
use crate::http::pages::Pages;
use crate::http::pages::account::page::{Entered, Section};
use crate::http::pages::account::{
    AccountForm, audit_as_route, check_route_access, finish, read_account_form,
};
use crate::http::pages::render::{Layout, Problem, html_page};
use crate::http::request::Request;
use crate::http::response::Response;
use crate::http::routes::Route;
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

/// `POST /account/recovery-codes`: ten new codes replace every earlier one.
pub async fn submit(api: &Api, pages: &Pages, request: &mut Request) -> Result<Response, ApiError> {
    let (identity, fields) = match read_account_form(api, pages, request).await? {
        AccountForm::Checked(identity, fields) => (identity, fields),
        AccountForm::Answered(response) => return Ok(response),
    };
    let made = async {
        check_route_access(
            api,
            request,
            &identity,
            Route::MfaRecoveryCodes,
            &Method::POST,
        )?;
        let password = fields
            .string("password")?
            .filter(|password| !password.is_empty())
            .map(Password::new);
        let codes = second_factor::regenerate_recovery_codes(
            &api.app,
            &identity,
            password,
            &request.client_info(api),
        )
        .await?;
        audit_as_route(
            api,
            request,
            &identity,
            Route::MfaRecoveryCodes,
            &Method::POST,
        );
        Ok::<_, ApiError>(codes)
    }
    .await;
    match made {
        Ok(codes) => draw_recovery_codes(api, &codes, true),
        Err(error) => {
            finish(
                api,
                pages,
                request,
                &identity,
                Err((Section::RecoveryCodes, error, Entered::default())),
            )
            .await
        }
    }
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
