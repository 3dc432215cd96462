//! The watch page and the room list, with every asset they need compiled into the binary:
//! no CDN is contacted at run time. hls.js comes from the npm registry, pinned by
//! `web/package-lock.json` and copied into `web/vendor/` by `scripts/vendor-web`.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

/// `GET /`: live rooms.
pub const INDEX_HTML: &str = include_str!("../../../web/index.html");
/// `GET /watch/ROOM`: player (and, later, chat).
pub const WATCH_HTML: &str = include_str!("../../../web/watch.html");

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "hls.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../../web/vendor/hls.min.js"),
    },
    Asset {
        name: "watch.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../../web/watch.js"),
    },
    Asset {
        name: "index.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../../web/index.js"),
    },
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../../web/style.css"),
    },
];

/// An HTML page with headers that keep it from being framed or sniffed.
pub fn page(html: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; media-src 'self' blob:; worker-src 'self' blob:; \
                 connect-src 'self'; img-src 'self' data:; style-src 'self'; \
                 frame-ancestors 'none'",
            ),
        ],
        html,
    )
        .into_response()
}

/// A bundled asset by file name.
pub fn asset(name: &str) -> Option<Response> {
    let a = ASSETS.iter().find(|a| a.name == name)?;
    Some(
        (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(a.content_type),
                ),
                // Assets change only with the binary; an hour keeps upgrades visible soon.
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=3600"),
                ),
                (
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ),
            ],
            a.body,
        )
            .into_response(),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn vendored_hls_js_matches_the_lockfile() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web");
        let lock: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(root.join("package-lock.json")).unwrap())
                .unwrap();
        let version = lock["packages"]["node_modules/hls.js"]["version"]
            .as_str()
            .unwrap();
        let versions = std::fs::read_to_string(root.join("vendor/VERSIONS")).unwrap();
        assert_eq!(
            versions.trim(),
            format!("hls.js {version}"),
            "run scripts/vendor-web"
        );
        let bundled = ASSETS.iter().find(|a| a.name == "hls.min.js").unwrap();
        let needle = format!("\"{version}\"");
        assert!(
            bundled
                .body
                .windows(needle.len())
                .any(|w| w == needle.as_bytes()),
            "web/vendor/hls.min.js is not hls.js {version}: run scripts/vendor-web"
        );
    }

    #[test]
    fn pages_reference_only_bundled_assets() {
        for html in [INDEX_HTML, WATCH_HTML] {
            for part in html.split("/assets/").skip(1) {
                let name = part.split('"').next().unwrap();
                assert!(
                    asset(name).is_some(),
                    "page references missing asset {name}"
                );
            }
            assert!(
                !html.contains("http://") && !html.contains("https://"),
                "no CDN"
            );
        }
    }
}
