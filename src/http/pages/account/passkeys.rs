//! `POST /account/passkeys/delete`: `passkey-id` and the password, through the same audited removal as
//! `DELETE /auth/passkey/{passkey-id}` (another user's passkey is not found). Adding a
//! passkey is the passkey script's ceremony against the passkey API.

use hyper::Method;

use crate::auth::password::Password;
use crate::http::Api;
use crate::http::error::ApiError;
use crate::http::handlers::passkeys::audited_remove_passkey;
use crate::http::pages::Pages;
use crate::http::pages::account::page::{Entered, Notice, Section};
use crate::http::pages::account::{AccountForm, check_route_access, finish, read_account_form};
use crate::http::request::Request;
use crate::http::response::Response;
use crate::http::routes::Route;
use crate::model::passkey::PasskeyId;

/// `POST /account/passkeys/delete`.
pub async fn submit_delete(
    api: &Api,
    pages: &Pages,
    request: &mut Request,
) -> Result<Response, ApiError> {
    let (identity, fields) = match read_account_form(api, pages, request).await? {
        AccountForm::Checked(identity, fields) => (identity, fields),
        AccountForm::Answered(response) => return Ok(response),
    };
    let outcome = async {
        check_route_access(api, request, &identity, Route::Passkey, &Method::DELETE)?;
        let text = fields.required_string("passkey-id")?;
        let id = PasskeyId::parse_canonical(&text).ok_or_else(|| {
            ApiError::invalid_field("passkey-id", "must be the id of one of your passkeys")
        })?;
        let password = fields.string("password")?.map(Password::new);
        audited_remove_passkey(api, request, &identity, id, password).await?;
        Ok(Notice::PasskeyRemoved)
    }
    .await
    .map_err(|error| (Section::Passkeys, error, Entered::default()));
    finish(api, pages, request, &identity, outcome).await
}
