//! Reading a page's POST: the body's fields, then the origin rule and the CSRF token,
//! before any field is used, so a form without its token changes nothing and signs no
//! one in.

use crate::auth::Identity;
use crate::http::Api;
use crate::http::error::ApiError;
use crate::http::fields::Fields;
use crate::http::pages::csrf::{self, BrowserBinding};
use crate::http::pages::{Pages, page_identity};
use crate::http::request::Request;

/// Who a form page is drawn for: the signed-in identity, if any, and the browser's CSRF
/// binding (started here for a first visit).
pub struct Visitor {
    pub identity: Option<Identity>,
    pub browser: BrowserBinding,
}

impl Visitor {
    /// The visitor of a `GET`.
    pub async fn read(api: &Api, request: &Request) -> Result<Visitor, ApiError> {
        let identity = page_identity(api, request).await?;
        let browser = BrowserBinding::read_or_start(api, &request.parts)?;
        Ok(Visitor { identity, browser })
    }

    /// The CSRF token a form drawn for this visitor carries.
    pub fn form_token(&self, pages: &Pages) -> String {
        self.browser
            .form_token(&pages.csrf_key, self.identity.as_ref())
    }
}

/// The visitor of a `POST` and its form, read and checked as `read_page_form` does.
pub async fn read_visitor_form(
    api: &Api,
    pages: &Pages,
    request: &mut Request,
) -> Result<(Visitor, PageForm), ApiError> {
    let identity = page_identity(api, request).await?;
    let form = read_page_form(api, pages, request, identity.as_ref()).await?;
    let browser = BrowserBinding::read_or_start(api, &request.parts)?;
    Ok((Visitor { identity, browser }, form))
}

/// A page POST once read: checked, or expired (no valid CSRF token). The fields of an
/// expired form only fill the form drawn again; nothing acts on them.
#[derive(Debug)]
pub enum PageForm {
    Checked(Fields),
    Expired(Fields),
}

impl PageForm {
    /// The fields, and whether the form expired (only to be drawn again).
    pub fn fields_and_expired(self) -> (Fields, bool) {
        match self {
            PageForm::Checked(fields) => (fields, false),
            PageForm::Expired(fields) => (fields, true),
        }
    }
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

/// The `token` a mail's link carries in its query, if it carries a non-empty one.
pub fn link_token(request: &Request) -> Result<Option<String>, ApiError> {
    Ok(request
        .query
        .string("token")?
        .filter(|token| !token.is_empty()))
}

/// An optional text field; an empty one counts as absent (a browser sends every input).
pub fn optional_text(fields: &Fields, name: &'static str) -> Result<Option<String>, ApiError> {
    Ok(fields.string(name)?.filter(|text| !text.is_empty()))
}

/// A checkbox: sent as `true` when ticked, absent when not.
pub fn checkbox(fields: &Fields, name: &'static str) -> Result<bool, ApiError> {
    Ok(fields.boolean(name)?.unwrap_or(false))
}
