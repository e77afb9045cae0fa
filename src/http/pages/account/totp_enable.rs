//! `POST /account/totp/enable`: the password again (an account made by OAuth has none and
//! needs a recent sign-in instead), through `second_factor::start_totp_enrolment` as
//! `POST /auth/mfa/totp` does. The answer is the enrolment page (QR code and secret, never
//! stored by the browser: every page is `no-store`), whose form confirms a first code.

use hyper::Method;

use crate::auth::password::Password;
use crate::auth::second_factor;
use crate::http::Api;
use crate::http::error::ApiError;
use crate::http::pages::Pages;
use crate::http::pages::account::page::{Entered, Section};
use crate::http::pages::account::totp::draw_enrolment;
use crate::http::pages::account::{
    AccountForm, audit_as_route, check_route_access, finish, read_account_form,
};
use crate::http::request::Request;
use crate::http::response::Response;
use crate::http::routes::Route;

/// `POST /account/totp/enable`.
pub async fn submit(api: &Api, pages: &Pages, request: &mut Request) -> Result<Response, ApiError> {
    let (identity, fields) = match read_account_form(api, pages, request).await? {
        AccountForm::Checked(identity, fields) => (identity, fields),
        AccountForm::Answered(response) => return Ok(response),
    };
    let started = async {
        check_route_access(api, request, &identity, Route::MfaTotp, &Method::POST)?;
        let password = fields
            .string("password")?
            .filter(|password| !password.is_empty())
            .map(Password::new);
        let enrolment = second_factor::start_totp_enrolment(
            &api.app,
            &identity,
            password,
            &request.client_info(api),
        )
        .await?;
        audit_as_route(api, request, &identity, Route::MfaTotp, &Method::POST);
        Ok::<_, ApiError>(enrolment)
    }
    .await;
    match started {
        Ok(enrolment) => draw_enrolment(api, pages, request, &identity, &enrolment, None),
        Err(error) => {
            finish(
                api,
                pages,
                request,
                &identity,
                Err((Section::Totp, error, Entered::default())),
            )
            .await
        }
    }
}
