//! Head office's dashboard: one HTML page, one script and one style sheet,
//! compiled into the binary (`include_str!`) and served at `/`, so the
//! relay needs no build step (its routes are `Asset` lines of
//! `api/routes.rs`), no CDN and no files beside it (the stores'
//! machines have no internet). The page holds no data: it signs in with a
//! pasted token and reads everything from the JSON API with that token in
//! the `Authorization` header, never in a URL.
//!
//! Every answer carries a Content-Security-Policy that allows only the
//! relay itself: no inline script or style, no other origin, no framing.
//! So even a value that slipped past the script's escaping (it inserts
//! data only as text) could not run.

use actix_web::http::header;
use actix_web::HttpResponse;

/// The page.
const INDEX: &str = include_str!("index.html");
/// The script (plain modern JavaScript, no framework).
const APP_JS: &str = include_str!("app.js");
/// The style sheet.
const APP_CSS: &str = include_str!("app.css");

/// Allows scripts, styles, images and requests from the relay only.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
frame-ancestors 'none'";

fn answer(content_type: &str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        // The files change only with the binary; revalidating is cheap and
        // keeps an upgraded relay from serving a stale script.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}

/// `GET /`: the page.
pub async fn index() -> HttpResponse {
    answer("text/html; charset=utf-8", INDEX)
}

/// `GET /dashboard/app.js`.
pub async fn app_js() -> HttpResponse {
    answer("text/javascript; charset=utf-8", APP_JS)
}

/// `GET /dashboard/app.css`.
pub async fn app_css() -> HttpResponse {
    answer("text/css; charset=utf-8", APP_CSS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_nothing_from_elsewhere_and_inserts_data_only_as_text() {
        // The one address in the files is the SVG namespace, which names
        // and loads nothing.
        for (name, text) in [
            ("index.html", INDEX),
            ("app.js", APP_JS),
            ("app.css", APP_CSS),
        ] {
            let outside = text
                .match_indices("http")
                .filter(|(i, _)| !text[*i..].starts_with("http://www.w3.org/2000/svg"))
                .count();
            assert_eq!(outside, 0, "{name} refers to another origin");
            assert!(!text.contains("@import"), "{name}");
        }
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!APP_JS.contains(sink), "app.js uses {sink}");
        }
        // The CSP forbids inline script and style: the page has none.
        assert!(!INDEX.contains("<script>") && !INDEX.contains("style="));
        assert!(!APP_JS.contains("style:"), "no inline style attributes");
        assert!(CSP.contains("script-src 'self'") && !CSP.contains("unsafe"));
    }
}
