//! Page models: one askama struct per page. Templates live in `templates/`.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use askama::Template;

use crate::service::invitations::{InvitationView, IssuedInvitation};
use crate::service::members::{MemberDetail, MemberView};
use crate::service::session::Session;

/// Renders a page with `status`; a template error is a bug and answers 500.
pub fn render<T: Template>(status: StatusCode, page: &T) -> HttpResponse {
    match page.render() {
        Ok(html) => HttpResponse::build(status)
            .content_type("text/html; charset=utf-8")
            .body(html),
        Err(e) => {
            tracing::error!(error.detail = %e, "template failed");
            HttpResponse::InternalServerError()
                .content_type("text/plain; charset=utf-8")
                .body("internal error")
        }
    }
}

pub fn ok<T: Template>(page: &T) -> HttpResponse {
    render(StatusCode::OK, page)
}

/// What the header shows: who is signed in, and the CSRF token for the sign-out form.
#[derive(Default)]
pub struct Nav {
    pub signed_in: bool,
    pub admin: bool,
    pub csrf: String,
}

impl Nav {
    pub fn of(session: Option<&Session>) -> Nav {
        match session {
            Some(s) => Nav {
                signed_in: s.user_id().is_some(),
                admin: s.is_admin(),
                csrf: s.data.csrf.clone(),
            },
            None => Nav::default(),
        }
    }
}

mod filters {
    use askama::Values;

    /// Unix seconds as `2026-11-25 19:34 UTC`.
    #[askama::filter_fn]
    pub fn when(t: &i64, _: &dyn Values) -> askama::Result<String> {
        Ok(super::format_time(*t))
    }
}

pub fn format_time(t: i64) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| d.format(fmt).ok())
        .unwrap_or_else(|| t.to_string())
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub nav: Nav,
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

#[derive(Template)]
#[template(path = "index.html")]
pub struct IndexPage {
    pub nav: Nav,
    pub csrf: String,
    pub organisation: String,
    /// A pending OpenID Connect request to return to after the key touch.
    pub resume: Option<String>,
    /// Why a touch is asked for (an application asked for a fresh one, …).
    pub notice: Option<&'static str>,
}

#[derive(Template)]
#[template(path = "enrol.html")]
pub struct EnrolPage {
    pub nav: Nav,
    pub csrf: String,
    pub organisation: String,
    /// The invitation token; empty when a signed-in member adds a key.
    pub token: String,
    pub bootstrap: bool,
    /// A recovery link: the key is added to an existing member.
    pub recovery: bool,
    pub email: String,
    pub display_name: String,
    pub role: String,
    pub min_keys: u32,
}

#[derive(Template)]
#[template(path = "me.html")]
pub struct MePage {
    pub nav: Nav,
    pub csrf: String,
    pub detail: MemberDetail,
    pub min_keys: u32,
    pub sessions: Vec<crate::storage::SessionRecord>,
    /// The id of the session viewing the page ("this browser").
    pub current_session: String,
}

#[derive(Template)]
#[template(path = "admin_members.html")]
pub struct AdminMembersPage {
    pub nav: Nav,
    pub members: Vec<MemberView>,
    pub compliant: usize,
}

#[derive(Template)]
#[template(path = "admin_member.html")]
pub struct AdminMemberPage {
    pub nav: Nav,
    pub csrf: String,
    pub detail: MemberDetail,
    pub sessions: Vec<crate::storage::SessionRecord>,
    pub recoveries: Vec<crate::service::recovery::RecoveryView>,
    /// The signed-in admin's id: they cannot approve a request they opened.
    pub me: String,
}

#[derive(Template)]
#[template(path = "admin_invitations.html")]
pub struct AdminInvitationsPage {
    pub nav: Nav,
    pub csrf: String,
    pub invitations: Vec<InvitationView>,
    pub issued: Option<IssuedInvitation>,
    pub error: Option<String>,
    /// The signed-in admin as invitations name their creator (`user:<id>`).
    pub me: String,
}

#[derive(Template)]
#[template(path = "admin_workspaces.html")]
pub struct AdminWorkspacesPage {
    pub nav: Nav,
    pub csrf: String,
    pub workspaces: Vec<crate::service::workspaces::WorkspaceView>,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "admin_workspace.html")]
pub struct AdminWorkspacePage {
    pub nav: Nav,
    pub csrf: String,
    pub view: crate::service::workspaces::WorkspaceView,
}

#[derive(Template)]
#[template(path = "admin_audit.html")]
pub struct AdminAuditPage {
    pub nav: Nav,
    pub filters: crate::service::audit_log::AuditFilters,
    pub events: Vec<crate::service::audit_log::AuditEventView>,
    /// The link to the next, older page.
    pub older: Option<String>,
    /// The link back to the newest page (when paging).
    pub newest: Option<String>,
    /// What is wrong with the filters: code and message.
    pub error: Option<(&'static str, String)>,
}

#[derive(Template)]
#[template(path = "admin_dashboard.html")]
pub struct AdminDashboardPage {
    pub nav: Nav,
    pub d: crate::service::dashboard::Dashboard,
}

/// The SAML service providers page.
#[derive(Template)]
#[template(path = "admin_saml.html")]
pub struct AdminSamlPage {
    pub nav: Nav,
    pub csrf: String,
    pub sps: Vec<crate::service::saml::registry::RegisteredSp>,
    pub workspaces: Vec<crate::storage::Workspace>,
    /// The form's values: an imported registration to review, a rejected one to fix, or
    /// the defaults.
    pub draft: SamlSpDraft,
    pub entity_id: String,
    pub sso_url: String,
    pub fingerprint: String,
    pub next_fingerprint: Option<String>,
    pub notice: Option<String>,
    pub error: Option<String>,
}

/// A registration as the form shows it (lists one per line).
pub struct SamlSpDraft {
    pub entity_id: String,
    pub name: String,
    pub acs_urls: String,
    pub name_id_format: String,
    pub authn_context: String,
    pub workspace: String,
    pub attributes: String,
    pub signing_certs: String,
    pub encryption_cert: String,
    pub require_signed_requests: bool,
    pub idp_initiated: bool,
    pub sign_response: bool,
}

impl SamlSpDraft {
    pub fn of(sp: Option<&crate::saml::sp::ServiceProvider>) -> SamlSpDraft {
        let defaults = crate::saml::sp::ServiceProvider::new(String::new(), Vec::new());
        let sp = sp.unwrap_or(&defaults);
        SamlSpDraft {
            entity_id: sp.entity_id.clone(),
            name: sp.name.clone(),
            // One endpoint a line; an indexed one keeps its index (`URL index`).
            acs_urls: sp
                .acs_urls
                .iter()
                .map(|a| match a {
                    crate::saml::sp::Acs::Url(url) => url.clone(),
                    crate::saml::sp::Acs::Indexed { url, index } => format!("{url} {index}"),
                })
                .collect::<Vec<_>>()
                .join("\n"),
            name_id_format: format!("{:?}", sp.name_id_format).to_lowercase(),
            authn_context: sp.authn_context.clone(),
            workspace: sp.workspace.clone().unwrap_or_default(),
            attributes: sp
                .attributes
                .iter()
                .map(|(s, n)| format!("{} = {n}", s.key()))
                .collect::<Vec<_>>()
                .join("\n"),
            signing_certs: sp.signing_certs.join("\n"),
            encryption_cert: sp.encryption_cert.clone().unwrap_or_default(),
            require_signed_requests: sp.require_signed_requests,
            idp_initiated: sp.idp_initiated,
            sign_response: sp.sign_response,
        }
    }
}

/// Carries a SAML response to the SP's ACS URL (submitted by the page's script, or by
/// the member's click without JavaScript).
#[derive(Template)]
#[template(path = "saml_post.html")]
pub struct SamlPostPage {
    pub nav: Nav,
    pub action: String,
    pub saml_response: String,
    pub relay_state: Option<String>,
}

#[derive(Template)]
#[template(path = "oidc_logout.html")]
pub struct OidcLogoutPage {
    pub nav: Nav,
    pub csrf: String,
    /// `true`: ask to confirm; `false`: say the member is signed out.
    pub confirm: bool,
    pub id_token_hint: String,
    pub client_id: String,
    pub post_logout_redirect_uri: String,
    pub state: String,
}

#[derive(Template)]
#[template(path = "admin_clients.html")]
pub struct AdminClientsPage {
    pub nav: Nav,
    pub csrf: String,
    pub clients: Vec<crate::storage::OidcClient>,
    pub workspaces: Vec<crate::storage::Workspace>,
    /// A client just created, with its secret shown this once.
    pub created: Option<crate::service::oidc::clients::CreatedClient>,
    pub error: Option<String>,
}

/// One client: its details, the change form, a new secret (shown this once when issued).
#[derive(Template)]
#[template(path = "admin_client.html")]
pub struct AdminClientPage {
    pub nav: Nav,
    pub csrf: String,
    pub client: crate::storage::OidcClient,
    pub workspaces: Vec<crate::storage::Workspace>,
    pub new_secret: Option<String>,
    pub notice: Option<String>,
    pub error: Option<String>,
}

/// The one time a recovery link is shown: to the admin whose approval issued it.
#[derive(Template)]
#[template(path = "admin_recovery_link.html")]
pub struct AdminRecoveryLinkPage {
    pub nav: Nav,
    pub email: String,
    pub issued: crate::service::recovery::IssuedRecovery,
}
