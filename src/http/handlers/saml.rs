//! The SAML identity provider's endpoints: metadata, single sign-on over both bindings,
//! the return after the key touch, and IdP-initiated sign-in. Each reads the request,
//! calls one service and renders what it says.

use actix_web::http::header;
use actix_web::{get, post, web, HttpRequest, HttpResponse};

use crate::error::Error;
use crate::http::errors::PageError;
use crate::http::extract::{client_ip, MaybeSession};
use crate::http::views::{self, Nav, SamlPostPage};
use crate::service::saml::sso::{self, Next};
use crate::state::AppState;

#[get("/saml/metadata")]
pub async fn metadata(state: web::Data<AppState>) -> Result<HttpResponse, PageError> {
    let doc = state.saml.metadata(&state).await?;
    Ok(HttpResponse::Ok()
        .content_type("application/samlmetadata+xml")
        .insert_header(("Cache-Control", "public, max-age=300"))
        .body(doc.to_string()))
}

/// The response page's policy: the usual one without `form-action`. Browsers apply
/// `form-action` to the redirects that follow a form post too, and an SP's ACS URL commonly
/// redirects to its application on another host; the page's only form targets the
/// registered ACS URL, and nothing on it comes unescaped from a request.
fn post_csp() -> String {
    crate::http::CSP.replace(" form-action 'self';", "")
}

fn answer(next: Next, session: &MaybeSession) -> Result<HttpResponse, PageError> {
    match next {
        Next::Redirect(location) => Ok(HttpResponse::SeeOther()
            .insert_header((header::LOCATION, location))
            .finish()),
        Next::Show(e) => Err(PageError(Error::bad_request(e.code(), e.to_string()))),
        Next::Post(form) => {
            let csp = post_csp();
            let refusal = form.refusal;
            let mut res = views::ok(&SamlPostPage {
                nav: Nav::of(session.0.as_ref()),
                action: form.action,
                saml_response: form.saml_response,
                relay_state: form.relay_state,
            });
            let headers = res.headers_mut();
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                header::HeaderValue::from_str(&csp).map_err(|e| Error::Internal(e.to_string()))?,
            );
            headers.insert(
                header::CACHE_CONTROL,
                header::HeaderValue::from_static("no-store"),
            );
            // A refusal travels to the SP in a 200 page: the metrics count it as one.
            if let Some(reason) = refusal {
                res.extensions_mut()
                    .insert(crate::metrics::ErrorCode(reason));
            }
            Ok(res)
        }
    }
}

/// HTTP-Redirect binding.
#[get("/saml/sso")]
pub async fn sso_redirect(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: MaybeSession,
) -> Result<HttpResponse, PageError> {
    let received = sso::from_redirect(req.query_string());
    let next = sso::receive(&state, session.0.as_ref(), received, client_ip(&req)).await?;
    answer(next, &session)
}

/// HTTP-POST binding. A malformed form body is answered like a malformed request.
#[post("/saml/sso")]
pub async fn sso_post(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: MaybeSession,
    body: web::Bytes,
) -> Result<HttpResponse, PageError> {
    let received = sso::from_post_form(&body);
    let next = sso::receive(&state, session.0.as_ref(), received, client_ip(&req)).await?;
    answer(next, &session)
}

#[derive(serde::Deserialize)]
pub struct ContinueQuery {
    #[serde(default)]
    id: String,
}

#[get("/saml/continue")]
pub async fn sso_continue(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: MaybeSession,
    query: web::Query<ContinueQuery>,
) -> Result<HttpResponse, PageError> {
    let next = sso::resume(&state, session.0.as_ref(), &query.id, client_ip(&req)).await?;
    answer(next, &session)
}

#[get("/saml/idp-initiated")]
pub async fn idp_initiated(
    state: web::Data<AppState>,
    req: HttpRequest,
    session: MaybeSession,
) -> Result<HttpResponse, PageError> {
    let asked = sso::from_idp_initiated(req.query_string());
    let next = sso::idp_initiated(&state, session.0.as_ref(), asked, client_ip(&req)).await?;
    answer(next, &session)
}
