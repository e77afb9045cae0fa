//! `POST /account/totp/disable`: the password again (unless the account has none) and a
//! current code, or a recovery code when the app is lost, through
//! `second_factor::disable_totp` as `DELETE /auth/mfa/totp` does; its recovery codes go
//! with it.

use hyper::Method;

use crate::auth::password::Password;
use crate::auth::second_factor::{self, PresentedSecondFactor};
use crate::http::Api;
use crate::http::error::ApiError;
use crate::http::pages::Pages;
use crate::http::pages::account::page::{Entered, Notice, Section};
use crate::http::pages::account::{
    AccountForm, audit_as_route, check_route_access, finish, read_account_form,
};
use crate::http::request::Request;
use crate::http::response::Response;
use crate::http::routes::Route;
use crate::model::Secret;

/// `POST /account/totp/disable`: `code` if typed, else `recovery-code`.
pub async fn submit(api: &Api, pages: &Pages, request: &mut Request) -> Result<Response, ApiError> {
    let (identity, fields) = match read_account_form(api, pages, request).await? {
        AccountForm::Checked(identity, fields) => (identity, fields),
        AccountForm::Answered(response) => return Ok(response),
    };
    let outcome = async {
        check_route_access(api, request, &identity, Route::MfaTotp, &Method::DELETE)?;
        let password = fields
            .string("password")?
            .filter(|password| !password.is_empty())
            .map(Password::new);
        let code = fields.string("code")?.filter(|code| !code.is_empty());
        let recovery_code = fields
            .string("recovery-code")?
            .filter(|code| !code.is_empty());
        let presented = match (code, recovery_code) {
            (Some(code), _) => PresentedSecondFactor::Code(Secret::new(code)),
            (None, Some(recovery_code)) => {
                PresentedSecondFactor::RecoveryCode(Secret::new(recovery_code))
            }
            (None, None) => return Err(ApiError::invalid_field("code", "is required")),
        };
        second_factor::disable_totp(
            &api.app,
            &identity,
            password,
            presented,
            &request.client_info(api),
        )
        .await?;
        audit_as_route(api, request, &identity, Route::MfaTotp, &Method::DELETE);
        Ok(Notice::TotpTurnedOff)
    }
    .await
    .map_err(|error| (Section::Totp, error, Entered::default()));
    finish(api, pages, request, &identity, outcome).await
}
