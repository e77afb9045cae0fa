//! Drawing `/account`: the account's state read through the `auth` use cases (profile,
//! live sessions, API tokens, second factors, linked identities), the notice a form's 303
//! names, and a form's problem shown next to that form with the focus on the field to
//! blame.

use askama::Template;
use hyper::Method;
use hyper::StatusCode;

use crate::auth::{Identity, account, api_tokens, passkeys, second_factor};
use crate::http::Api;
use crate::http::error::ApiError;
use crate::http::pages::account::check_route_access;
use crate::http::pages::csrf::BrowserBinding;
use crate::http::pages::render::{Layout, Problem, html_page};
use crate::http::pages::{Pages, passkeys_available};
use crate::http::request::Request;
use crate::http::response::Response;
use crate::http::routes::Route;
use crate::model::{
    ApiToken, Permission, PermissionSet, Session, SessionKind, UaType, UnixSeconds,
};
use crate::rfc3339::format_rfc3339;

/// A form's notice after its 303, by the fixed name in `?done=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notice {
    ProfileSaved,
    PasswordChanged,
    PasswordChangedElsewhereSignedOut,
    SessionEnded,
    OtherSessionsEnded,
    ApiTokenDeleted,
    TotpTurnedOff,
    PasskeyAdded,
    PasskeyRemoved,
}

impl Notice {
    const ALL: [Notice; 9] = [
        Notice::ProfileSaved,
        Notice::PasswordChanged,
        Notice::PasswordChangedElsewhereSignedOut,
        Notice::SessionEnded,
        Notice::OtherSessionsEnded,
        Notice::ApiTokenDeleted,
        Notice::TotpTurnedOff,
        Notice::PasskeyAdded,
        Notice::PasskeyRemoved,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Notice::ProfileSaved => "profile",
            Notice::PasswordChanged => "password",
            Notice::PasswordChangedElsewhereSignedOut => "password-signed-out-elsewhere",
            Notice::SessionEnded => "session-ended",
            Notice::OtherSessionsEnded => "other-sessions-ended",
            Notice::ApiTokenDeleted => "api-token-deleted",
            Notice::TotpTurnedOff => "totp-off",
            // The passkey script goes here after adding one (`data-done-url`).
            Notice::PasskeyAdded => "passkey-added",
            Notice::PasskeyRemoved => "passkey-removed",
        }
    }

    pub fn from_name(name: &str) -> Option<Notice> {
        Notice::ALL.into_iter().find(|notice| notice.name() == name)
    }

    fn text(self) -> &'static str {
        match self {
            Notice::ProfileSaved => "Your profile was saved.",
            Notice::PasswordChanged => {
                "Your password was changed. You are still signed in here and on your other devices."
            }
            Notice::PasswordChangedElsewhereSignedOut => {
                "Your password was changed. Every other session was signed out and your API tokens were deleted; this browser stays signed in."
            }
            Notice::SessionEnded => "That session was signed out.",
            Notice::OtherSessionsEnded => {
                "Every other session was signed out; this browser stays signed in."
            }
            Notice::ApiTokenDeleted => "The API token was deleted. It no longer works.",
            Notice::TotpTurnedOff => {
                "The authenticator app was turned off, and its recovery codes no longer work."
            }
            Notice::PasskeyAdded => "The passkey was added. You can sign in with it from now on.",
            Notice::PasskeyRemoved => "The passkey was removed. It no longer signs you in.",
        }
    }
}

/// The part of the page a problem belongs to: next to its form, or at the top.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    Page,
    Profile,
    Password,
    ApiTokens,
    Totp,
    RecoveryCodes,
    Passkeys,
}

impl Section {
    fn name(self) -> &'static str {
        match self {
            Section::Page => "page",
            Section::Profile => "profile",
            Section::Password => "password",
            Section::ApiTokens => "api-tokens",
            Section::Totp => "totp",
            Section::RecoveryCodes => "recovery-codes",
            Section::Passkeys => "passkeys",
        }
    }
}

/// What a form drawn again after a problem shows as typed (never a password).
#[derive(Debug, Default)]
pub struct Entered {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub logout_all: bool,
    pub ttl: Option<u64>,
    pub permissions: Option<PermissionSet>,
}

/// What the page shows beyond the account's state: a notice, or a problem with one form
/// and what was typed into it.
#[derive(Debug, Default)]
pub struct Shown<'a> {
    pub notice: Option<Notice>,
    pub problem: Option<(Section, &'a ApiError)>,
    pub entered: Entered,
}

/// The lifetimes the token form offers, in seconds (0: never expires).
const TOKEN_LIFETIMES: [(u64, &str); 5] = [
    (86_400, "1 day"),
    (2_592_000, "30 days"),
    (7_776_000, "90 days"),
    (31_536_000, "1 year"),
    (0, "Never expires"),
];

/// The lifetime the token form starts with.
const DEFAULT_TOKEN_LIFETIME: u64 = 2_592_000;

struct SessionRow {
    id: String,
    is_current: bool,
    description: String,
    remote_ip: String,
    started: Moment,
    expires: Moment,
}

struct ApiTokenRow {
    prefix: String,
    permissions: String,
    created: Moment,
    expires: Option<Moment>,
}

struct LifetimeChoice {
    seconds: u64,
    label: &'static str,
    chosen: bool,
}

struct PermissionChoice {
    name: &'static str,
    chosen: bool,
}

/// The "Second factors" section: the authenticator app (TOTP) and its recovery codes, and
/// the passkeys, each with its forms.
pub struct SecondFactorsSection {
    pub totp_on: bool,
    pub recovery_codes_left: usize,
    pub passkeys: Vec<PasskeyRow>,
    /// Whether passkeys can be added here (`public_url` is set).
    pub passkeys_available: bool,
    /// Whether the forms ask for the password: an account made by OAuth has none, and
    /// needs a recent sign-in instead.
    pub has_password: bool,
}

/// One passkey in the list, with its remove form.
pub struct PasskeyRow {
    pub id: String,
    pub name: String,
    pub created: Moment,
    pub last_used: Option<Moment>,
}

struct IdentityRow {
    provider: String,
    subject: String,
    linked: Moment,
}

/// A time as a person reads it, and as `<time datetime>` carries it.
pub struct Moment {
    machine: String,
    human: String,
}

impl Moment {
    pub fn at(seconds: UnixSeconds) -> Moment {
        let machine = format_rfc3339(seconds);
        let human = match (machine.get(..10), machine.get(11..16)) {
            (Some(day), Some(minute)) => format!("{day} {minute} UTC"),
            _ => machine.clone(),
        };
        Moment { machine, human }
    }
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    layout: Layout,
    /// A problem with no form of its own, at the top (the layout draws it).
    problem: Option<Problem>,
    section_problem: Option<(Section, Problem)>,
    notice: Option<&'static str>,
    csrf_token: String,
    email: String,
    first_name: String,
    last_name: String,
    logout_all: bool,
    sessions: Vec<SessionRow>,
    has_other_sessions: bool,
    /// `None` when the visitor may not read API tokens (`read:user`).
    api_tokens: Option<Vec<ApiTokenRow>>,
    /// Whether the visitor may create and delete API tokens (`write:user`).
    may_change_api_tokens: bool,
    lifetimes: Vec<LifetimeChoice>,
    permissions: Vec<PermissionChoice>,
    /// `None` only in tests of the rest of the page: the section is not drawn.
    second_factors: Option<SecondFactorsSection>,
    identities: Vec<IdentityRow>,
}

impl AccountPage {
    /// The problem to draw next to this section's form.
    fn problem_in(&self, section: &str) -> Option<&Problem> {
        self.section_problem
            .as_ref()
            .filter(|(shown_in, _)| shown_in.name() == section)
            .map(|(_, problem)| problem)
    }

    /// Whether `field` gets the focus: the field to blame in this section's problem, or
    /// the section's first field when the problem names none.
    fn focuses(&self, section: &str, field: &str, fallback: &str) -> bool {
        self.problem_in(section)
            .is_some_and(|problem| Problem::focuses(Some(problem), field, fallback))
    }

    fn blames(&self, section: &str, field: &str) -> bool {
        Problem::blames(self.problem_in(section), field)
    }
}

/// A problem worded for people, for the errors only the account forms meet; the rest as
/// every page words them.
fn account_problem(error: &ApiError) -> Problem {
    let (field, message): (Option<&str>, String) = match error {
        ApiError::WrongPassword { field } => (
            Some(field),
            "Your current password is not right. Type it again.".to_owned(),
        ),
        ApiError::MissingPermission(permission) => (
            None,
            format!(
                "Your account cannot do that: it needs the {} permission.",
                permission.name()
            ),
        ),
        ApiError::NotFound => (
            None,
            "That is no longer there: it may have ended or been deleted already.".to_owned(),
        ),
        ApiError::OutlivesCredential => (
            Some("ttl"),
            "A token cannot outlive the credential that makes it. Choose a shorter lifetime."
                .to_owned(),
        ),
        ApiError::Conflict(what) => (None, format!("That cannot be done: {what}.")),
        ApiError::InvalidField { field, .. } if field == "ttl" => (
            Some("ttl"),
            "Choose one of the lifetimes offered.".to_owned(),
        ),
        ApiError::InvalidField { field, .. } if field == "permissions" => (
            Some("permissions"),
            "Choose at least one permission, among those your account holds.".to_owned(),
        ),
        _ => return Problem::from_error(error),
    };
    Problem {
        message,
        field: field.map(str::to_owned),
    }
}

/// Draws the page for a signed-in visitor, with `status`.
pub async fn draw(
    api: &Api,
    pages: &Pages,
    request: &Request,
    identity: &Identity,
    status: StatusCode,
    shown: Shown<'_>,
) -> Result<Response, ApiError> {
    let browser = BrowserBinding::read_or_start(api, &request.parts)?;
    let user = &identity.user;
    let entered = shown.entered;
    let sessions = session_rows(account::list_sessions(&api.app, identity).await?, identity);
    let may = |route, method| check_route_access(api, request, identity, route, method).is_ok();
    let api_tokens = if may(Route::ApiTokens, &Method::GET) {
        let tokens = api_tokens::list_api_tokens(&api.app, identity, false).await?;
        Some(tokens.iter().map(api_token_row).collect())
    } else {
        None
    };
    let may_change_api_tokens = may(Route::ApiTokens, &Method::POST);
    let second_factors = second_factors_section(api, identity).await?;
    // A problem goes next to its form; at the top when that form is not drawn.
    let (problem, section_problem) = match shown.problem {
        Some((Section::ApiTokens, error)) if !may_change_api_tokens => {
            (Some(account_problem(error)), None)
        }
        Some((Section::RecoveryCodes, error)) if !second_factors.totp_on => {
            (Some(account_problem(error)), None)
        }
        Some((Section::Page, error)) => (Some(account_problem(error)), None),
        Some((section, error)) => (None, Some((section, account_problem(error)))),
        None => (None, None),
    };
    let (lifetimes, permissions) = if may_change_api_tokens {
        token_form_choices(identity.effective_permissions, &entered)
    } else {
        (Vec::new(), Vec::new())
    };
    let identities = account::linked_identities(&api.app, identity)
        .await?
        .into_iter()
        .map(|linked| IdentityRow {
            provider: linked.provider,
            subject: linked.subject,
            linked: Moment::at(linked.linked),
        })
        .collect();
    let second_factors = Some(second_factors);
    let mut layout = Layout::new(api, "Your account");
    if second_factors
        .as_ref()
        .is_some_and(|section| section.passkeys_available)
    {
        layout = layout.with_passkey_script(api);
    }
    let page = AccountPage {
        layout,
        problem,
        section_problem,
        notice: shown.notice.map(Notice::text),
        csrf_token: browser.form_token(&pages.csrf_key, Some(identity)),
        email: user.email.clone(),
        first_name: entered
            .first_name
            .unwrap_or_else(|| user.first_name.clone().unwrap_or_default()),
        last_name: entered
            .last_name
            .unwrap_or_else(|| user.last_name.clone().unwrap_or_default()),
        logout_all: entered.logout_all,
        has_other_sessions: sessions.iter().any(|session| !session.is_current),
        sessions,
        api_tokens,
        may_change_api_tokens,
        lifetimes,
        permissions,
        second_factors,
        identities,
    };
    html_page(api, status, &page, Some(&browser), &[])
}

/// The second factors the visitor holds: the summary `GET /user/current` reports, and the
/// passkeys (none to list where passkeys are not available).
async fn second_factors_section(
    api: &Api,
    identity: &Identity,
) -> Result<SecondFactorsSection, ApiError> {
    let held = second_factor::summary(&api.app, identity.user.id).await?;
    let passkeys_available = passkeys_available(api);
    let passkeys = if passkeys_available {
        passkeys::list_passkeys(&api.app, identity)
            .await?
            .into_iter()
            .map(|passkey| PasskeyRow {
                id: passkey.id.to_string(),
                name: passkey.name,
                created: Moment::at(passkey.created),
                last_used: passkey.last_used.map(Moment::at),
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(SecondFactorsSection {
        totp_on: held.totp,
        recovery_codes_left: held.recovery_codes_left,
        passkeys,
        passkeys_available,
        has_password: identity.user.password_hash.is_some(),
    })
}

fn session_rows(sessions: Vec<Session>, identity: &Identity) -> Vec<SessionRow> {
    let mut rows: Vec<SessionRow> = sessions
        .into_iter()
        .map(|session| {
            let kind = match session.kind {
                SessionKind::SignIn => "Signed in",
                SessionKind::Minted => "Minted token",
            };
            SessionRow {
                id: session.id.to_string(),
                is_current: Some(session.id) == identity.session_id,
                description: format!("{kind} · {}", device_name(session.ua_type)),
                remote_ip: session.remote_ip,
                started: Moment::at(session.created),
                expires: Moment::at(session.expire),
            }
        })
        .collect();
    // This browser's session first; the rest stay newest first.
    rows.sort_by_key(|row| !row.is_current);
    rows
}

/// The kind of client a session's `User-Agent` named, as a person reads it.
fn device_name(ua_type: UaType) -> &'static str {
    match ua_type {
        UaType::Browser => "Browser",
        UaType::Mobile => "Mobile",
        UaType::DesktopApp => "Desktop app",
        UaType::Cli => "Command line",
        UaType::Bot => "Bot",
        UaType::Unknown => "Unknown client",
    }
}

fn api_token_row(api_token: &ApiToken) -> ApiTokenRow {
    let effective = api_token
        .permissions
        .iter()
        .filter(|permission| !api_token.restrictions.contains(*permission))
        .map(Permission::name)
        .collect::<Vec<_>>();
    ApiTokenRow {
        prefix: api_token.prefix.clone(),
        permissions: if effective.is_empty() {
            "no permissions".to_owned()
        } else {
            effective.join(", ")
        },
        created: Moment::at(api_token.created),
        expires: api_token.expires_at.map(Moment::at),
    }
}

/// The token form's choices: the lifetimes, and the permissions the visitor holds (a
/// token can have no other), all ticked until the visitor sends the form.
fn token_form_choices(
    held: PermissionSet,
    entered: &Entered,
) -> (Vec<LifetimeChoice>, Vec<PermissionChoice>) {
    let chosen_ttl = entered.ttl.unwrap_or(DEFAULT_TOKEN_LIFETIME);
    let lifetimes = TOKEN_LIFETIMES
        .into_iter()
        .map(|(seconds, label)| LifetimeChoice {
            seconds,
            label,
            chosen: seconds == chosen_ttl,
        })
        .collect();
    let permissions = held
        .iter()
        .map(|permission| PermissionChoice {
            name: permission.name(),
            chosen: entered
                .permissions
                .is_none_or(|chosen| chosen.contains(permission)),
        })
        .collect();
    (lifetimes, permissions)
}

#[cfg(test)]
mod tests {
    use askama::Template;

    use super::{AccountPage, Moment, PasskeyRow, SecondFactorsSection};
    use crate::http::pages::render::Layout;

    fn account_page(second_factors: Option<SecondFactorsSection>) -> String {
        AccountPage {
            layout: Layout {
                product: "Latchkey".to_owned(),
                heading: "Your account".to_owned(),
                stylesheet_url: "/assets/latchkey.css?v=0".to_owned(),
                operator_stylesheet_url: None,
                passkey_script_url: None,
            },
            problem: None,
            section_problem: None,
            notice: None,
            csrf_token: "form-token".to_owned(),
            email: "ada@example.com".to_owned(),
            first_name: String::new(),
            last_name: String::new(),
            logout_all: false,
            sessions: Vec::new(),
            has_other_sessions: false,
            api_tokens: None,
            may_change_api_tokens: false,
            lifetimes: Vec::new(),
            permissions: Vec::new(),
            second_factors,
            identities: Vec::new(),
        }
        .render()
        .unwrap()
    }

    fn section(totp_on: bool, passkeys_available: bool, has_password: bool) -> String {
        let html = account_page(Some(SecondFactorsSection {
            totp_on,
            recovery_codes_left: 7,
            passkeys: vec![PasskeyRow {
                id: "passkey-1".to_owned(),
                name: "Ada's <laptop>".to_owned(),
                created: Moment::at(1_767_225_600),
                last_used: None,
            }],
            passkeys_available,
            has_password,
        }));
        let start = html
            .find("<section aria-labelledby=\"second-factors-heading\"")
            .unwrap();
        let end = start + html[start..].find("</section>").unwrap();
        html[start..end].to_owned()
    }

    /// The actions of the forms in `html`, each checked: one submit button, the CSRF token,
    /// a label for every field shown.
    fn checked_form_actions(html: &str) -> Vec<String> {
        html.split("<form ")
            .skip(1)
            .map(|form| {
                let form = form.split("</form>").next().unwrap();
                assert_eq!(form.matches("<button").count(), 1, "{form}");
                assert!(
                    form.contains("name=\"csrf-token\" value=\"form-token\""),
                    "{form}"
                );
                for input in form.split("<input ").skip(1) {
                    if input.contains("type=\"hidden\"") || input.contains(" hidden ") {
                        continue;
                    }
                    let id = input
                        .split("id=\"")
                        .nth(1)
                        .unwrap()
                        .split('"')
                        .next()
                        .unwrap();
                    assert!(
                        html.contains(&format!("<label for=\"{id}\"")),
                        "no label for {id}"
                    );
                }
                form.split("action=\"")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    }

    #[test]
    fn without_the_second_factor_use_cases_the_section_is_not_drawn() {
        let html = account_page(None);
        assert!(!html.contains("second-factors"));
        assert!(!html.contains("data-passkey"));
    }

    #[test]
    fn an_account_without_totp_can_turn_it_on_and_add_or_remove_passkeys() {
        let html = section(false, true, true);
        assert!(html.contains("id=\"second-factors\""));
        assert_eq!(
            checked_form_actions(&html),
            ["/account/totp/enable", "/account/passkeys/delete"]
        );
        assert!(
            html.contains("name=\"password\" type=\"password\" autocomplete=\"current-password\"")
        );
        assert!(html.contains("name=\"passkey-id\" value=\"passkey-1\""));
        assert!(
            html.contains("Ada&#39;s &#60;laptop&#62;")
                || html.contains("Ada&#x27;s &lt;laptop&gt;"),
            "{html}"
        );
        assert!(html.contains("never used"));
        // The passkey controls: no form (a password must not reach a URL without the
        // script), hidden until the script shows them, with an alert for problems.
        assert!(html.contains(
            "data-passkey-register data-done-url=\"/account?done=passkey-added#passkeys\" hidden"
        ));
        assert!(
            html.contains("<button type=\"button\" data-passkey-button>Add a passkey</button>")
        );
        assert!(html.contains("id=\"passkey-password\" type=\"password\""));
        assert!(html.contains("role=\"alert\" data-passkey-problem hidden"));
    }

    #[test]
    fn an_account_with_totp_can_turn_it_off_and_replace_its_recovery_codes() {
        let html = section(true, true, true);
        assert_eq!(
            checked_form_actions(&html),
            [
                "/account/totp/disable",
                "/account/recovery-codes",
                "/account/passkeys/delete"
            ]
        );
        let disable = html
            .split("action=\"/account/totp/disable\"")
            .nth(1)
            .unwrap();
        let disable = disable.split("</form>").next().unwrap();
        assert!(disable.contains("name=\"password\""));
        assert!(disable.contains(
            "name=\"code\" type=\"text\" inputmode=\"numeric\" autocomplete=\"one-time-code\""
        ));
        assert!(html.contains("7 of your recovery codes are left"));
    }

    #[test]
    fn an_account_without_a_password_is_not_asked_for_one_and_passkeys_may_be_off() {
        let html = section(false, false, false);
        assert!(!html.contains("type=\"password\""), "{html}");
        assert!(!html.contains("data-passkey-register"));
        assert!(html.contains("This service does not offer passkeys."));
        checked_form_actions(&html);
    }
}
