//! `POST /account/password`: the current and the new password, and "sign out everywhere
//! else" (the API's `logout-all`), through `auth::account::change_own_password` as
//! `PUT /auth/current/password` does. Sessions outlive a password change and `logout-all`
//! keeps the caller's own, so this browser stays signed in either way.

use hyper::Method;

use crate::auth::account;
use crate::auth::password::Password;
use crate::http::Api;
use crate::http::error::ApiError;
use crate::http::pages::Pages;
use crate::http::pages::account::page::{Entered, Notice, Section};
use crate::http::pages::account::{
    AccountForm, audit, check_route_access, finish, read_account_form,
};
use crate::http::pages::form::checkbox;
use crate::http::request::Request;
use crate::http::response::Response;
use crate::http::routes::Route;

/// `POST /account/password`.
pub async fn submit(api: &Api, pages: &Pages, request: &mut Request) -> Result<Response, ApiError> {
    let (identity, fields) = match read_account_form(api, pages, request).await? {
        AccountForm::Checked(identity, fields) => (identity, fields),
        AccountForm::Answered(response) => return Ok(response),
    };
    let logout_all = checkbox(&fields, "logout-all")?;
    let old_password = fields.string("old-password")?.unwrap_or_default();
    let new_password = fields.string("new-password")?.unwrap_or_default();
    let outcome = async {
        check_route_access(
            api,
            request,
            &identity,
            Route::CurrentPassword,
            &Method::PUT,
        )?;
        if old_password.is_empty() {
            return Err(ApiError::invalid_field("old-password", "is required"));
        }
        if new_password.is_empty() {
            return Err(ApiError::invalid_field("new-password", "is required"));
        }
        account::change_own_password(
            &api.app,
            &identity,
            Password::new(old_password),
            Password::new(new_password),
            logout_all,
            &request.client_info(api),
        )
        .await?;
        audit(api, request, &identity, "password-changed");
        Ok(if logout_all {
            Notice::PasswordChangedElsewhereSignedOut
        } else {
            Notice::PasswordChanged
        })
    }
    .await
    .map_err(|error| {
        let entered = Entered {
            logout_all,
            ..Entered::default()
        };
        (Section::Password, error, entered)
    });
    finish(api, pages, request, &identity, outcome).await
}
