//! Reading a page's POST: the body's fields, then the origin rule and the CSRF token,
//! before any field is used, so a form without its token changes nothing and signs no
//! one in.

use crate::auth::Identity;
use crate::http::Api;
use crate::http::error::ApiError;
use crate::http::fields::Fields;
use crate::http::pages::Pages;
use crate::http::pages::csrf;
use crate::http::request::Request;

/// A page POST once read: checked, or expired (no valid CSRF token). The fields of an
/// expired form only fill the form drawn again; nothing acts on them.
#[derive(Debug)]
pub enum PageForm {
    Checked(Fields),
    Expired(Fields),
}

/// Reads the body and checks the origin (a refusal is an error) and the CSRF token for
/// this visitor, signed in or not.
pub async fn read_page_form(
    api: &Api,
    pages: &Pages,
    request: &mut Request,
    identity: Option<&Identity>,
) -> Result<PageForm, ApiError> {
    csrf::check_page_origin(api, &request.parts)?;
    let fields = request.fields(api).await?;
    let token = fields.string(csrf::FORM_FIELD).ok().flatten();
    match csrf::check_form_token(
        api,
        &pages.csrf_key,
        &request.parts,
        token.as_deref(),
        identity,
    ) {
        Ok(()) => Ok(PageForm::Checked(fields)),
        Err(ApiError::FormTokenInvalid) => Ok(PageForm::Expired(fields)),
        Err(error) => Err(error),
    }
}

/// For a form that has nothing to draw again: a checked form, or `FormTokenInvalid`.
pub async fn read_checked_form(
    api: &Api,
    pages: &Pages,
    request: &mut Request,
    identity: Option<&Identity>,
) -> Result<Fields, ApiError> {
    match read_page_form(api, pages, request, identity).await? {
        PageForm::Checked(fields) => Ok(fields),
        PageForm::Expired(_) => Err(ApiError::FormTokenInvalid),
    }
}

/// An optional text field; an empty one counts as absent (a browser sends every input).
pub fn optional_text(fields: &Fields, name: &'static str) -> Result<Option<String>, ApiError> {
    Ok(fields.string(name)?.filter(|text| !text.is_empty()))
}

/// A checkbox: sent as `true` when ticked, absent when not.
pub fn checkbox(fields: &Fields, name: &'static str) -> Result<bool, ApiError> {
    Ok(fields.boolean(name)?.unwrap_or(false))
}
