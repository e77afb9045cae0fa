//! `POST /account/totp/confirm`: the first code of the pending secret, through
//! `second_factor::confirm_totp_enrolment` as `POST /auth/mfa/totp/confirm` does. TOTP is
//! then on, and the answer shows the ten recovery codes, this once. A refused code draws
//! the enrolment page again (its pending secret read back) with the problem.

use hyper::Method;

use crate::auth::second_factor;
use crate::http::Api;
use crate::http::error::ApiError;
use crate::http::pages::Pages;
use crate::http::pages::account::page::{Entered, Section};
use crate::http::pages::account::recovery_codes::draw_recovery_codes;
use crate::http::pages::account::totp::draw_enrolment;
use crate::http::pages::account::{
    AccountForm, audit_as_route, check_route_access, finish, read_account_form,
};
use crate::http::request::Request;
use crate::http::response::Response;
use crate::http::routes::Route;
use crate::model::Secret;

/// `POST /account/totp/confirm`.
pub async fn submit(api: &Api, pages: &Pages, request: &mut Request) -> Result<Response, ApiError> {
    let (identity, fields) = match read_account_form(api, pages, request).await? {
        AccountForm::Checked(identity, fields) => (identity, fields),
        AccountForm::Answered(response) => return Ok(response),
    };
    let confirmed = async {
        check_route_access(
            api,
            request,
            &identity,
            Route::MfaTotpConfirm,
            &Method::POST,
        )?;
        let code = fields.string("code")?.unwrap_or_default();
        if code.is_empty() {
            return Err(ApiError::invalid_field("code", "is required"));
        }
        let codes = second_factor::confirm_totp_enrolment(
            &api.app,
            &identity,
            Secret::new(code),
            &request.client_info(api),
        )
        .await?;
        audit_as_route(
            api,
            request,
            &identity,
            Route::MfaTotpConfirm,
            &Method::POST,
        );
        Ok(codes)
    }
    .await;
    let error = match confirmed {
        Ok(codes) => return draw_recovery_codes(api, &codes, false),
        Err(error) => error,
    };
    let code_refused = matches!(
        error,
        ApiError::WrongSecondFactor { .. }
            | ApiError::InvalidField { .. }
            | ApiError::TooManyRequests(_)
    );
    if code_refused
        && let Some(enrolment) = second_factor::pending_totp_enrolment(&api.app, &identity).await?
    {
        return draw_enrolment(api, pages, request, &identity, &enrolment, Some(&error));
    }
    // Nothing pending (it expired, or TOTP is on already), or the form may not be used.
    finish(
        api,
        pages,
        request,
        &identity,
        Err((Section::Totp, error, Entered::default())),
    )
    .await
}
