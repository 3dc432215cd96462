//! The HTTP contract of DESIGN.md against the real binary: content types, caching, gzip, CORS,
//! status codes for client mistakes, the API, metrics, and HTTP/2 without TLS.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::Duration;

use common::{Server, playlist_uris, poll_text};

fn raw_client() -> reqwest::Client {
    // No automatic decompression, so the test sees Content-Encoding as a player would.
    reqwest::Client::builder()
        .no_gzip()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

async fn status(server: &Server, path: &str) -> u16 {
    raw_client()
        .get(server.url(path))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_contract() {
    let server = Server::start();
    let key = server.first_key.clone().unwrap();
    let publisher = common::live_publisher(&server, &key);
    let media = poll_text(
        &server.url("/live/main/stream.m3u8"),
        Duration::from_secs(15),
        |t| t.contains("#EXTINF"),
    )
    .await;
    let c = raw_client();

    // Playlists: type, short cache, CORS, gzip when asked for.
    let r = c
        .get(server.url("/live/main/index.m3u8"))
        .header("accept-encoding", "gzip")
        .header("origin", "https://elsewhere.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers();
    assert_eq!(h["content-type"], "application/vnd.apple.mpegurl");
    assert_eq!(h["cache-control"], "public, max-age=1");
    assert_eq!(h["access-control-allow-origin"], "*");
    assert_eq!(h["content-encoding"], "gzip");

    // Media: immutable, never gzipped.
    let (inits, segs) = playlist_uris(&media);
    for uri in [&inits[0], &segs[0]] {
        let r = c
            .get(server.url(&format!("/live/main/{uri}")))
            .header("accept-encoding", "gzip")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{uri}");
        let h = r.headers().clone();
        assert_eq!(h["content-type"], "video/mp4");
        assert!(h["cache-control"].to_str().unwrap().contains("immutable"));
        assert!(
            h.get("content-encoding").is_none(),
            "media must not be gzipped"
        );
        let len: usize = h["content-length"].to_str().unwrap().parse().unwrap();
        assert_eq!(r.bytes().await.unwrap().len(), len);
    }

    // HEAD answers the length without the body.
    let r = c
        .head(server.url(&format!("/live/main/{}", segs[0])))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-length"]
            .to_str()
            .unwrap()
            .parse::<usize>()
            .unwrap()
            > 0
    );
    assert_eq!(r.bytes().await.unwrap().len(), 0);
    // A CORS preflight (not the fast path for GET/HEAD) is answered by the router's CORS layer.
    let r = c
        .request(
            reqwest::Method::OPTIONS,
            server.url("/live/main/stream.m3u8"),
        )
        .header("origin", "https://elsewhere.example")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert!(
        r.headers()["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("GET")
    );
    // Percent-encoded paths take the router, which decodes them the same way.
    assert_eq!(status(&server, "/live/m%61in/index.m3u8").await, 200);

    // Client mistakes are 4xx, never 500.
    assert_eq!(status(&server, "/live/Main/index.m3u8").await, 400);
    assert_eq!(status(&server, "/live/no-such-room/index.m3u8").await, 404);
    assert_eq!(status(&server, "/live/main/seg-999999.m4s").await, 404);
    assert_eq!(status(&server, "/live/main/a%00b.m4s").await, 400);
    assert_eq!(
        status(&server, "/live/main/..%2f..%2fetc%2fpasswd").await,
        400
    );
    assert_eq!(
        status(&server, &format!("/live/{}/index.m3u8", "a".repeat(65))).await,
        400
    );
    assert_eq!(status(&server, "/watch/Bad%20Room").await, 400);
    assert_eq!(status(&server, "/api/rooms/nosuch").await, 404);
    assert_eq!(status(&server, "/nothing/here").await, 404);
    assert_eq!(status(&server, "/assets/nothing.js").await, 404);

    // Pages and assets are served by roomcast itself.
    assert_eq!(status(&server, "/").await, 200);
    assert_eq!(status(&server, "/favicon.ico").await, 204);
    assert_eq!(status(&server, "/watch/main").await, 200);
    let hls_js = c
        .get(server.url("/assets/hls.min.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        hls_js.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );

    // API.
    let rooms: serde_json::Value = c
        .get(server.url("/api/rooms"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let main = rooms
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "main")
        .unwrap();
    assert_eq!(main["live"], true);
    assert_eq!(main["codecs"], "avc1.64001f,mp4a.40.2");
    assert_eq!(main["resolution"], "1280x720");
    assert!(main["bitrate"].as_u64().unwrap() > 100_000, "{main}");
    let one: serde_json::Value = c
        .get(server.url("/api/rooms/main"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["live"], true);

    // A plain HLS player (this client polled the media playlist) counts as a viewer.
    let deadline = std::time::Instant::now() + Duration::from_secs(6);
    loop {
        let _ = c
            .get(server.url("/live/main/stream.m3u8"))
            .send()
            .await
            .unwrap();
        let one: serde_json::Value = c
            .get(server.url("/api/rooms/main"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if one["viewers"].as_u64().unwrap_or(0) >= 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "HLS player not counted: {one}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Health and metrics.
    assert_eq!(status(&server, "/healthz").await, 200);
    let metrics = c
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("roomcast_live_rooms"), "{metrics}");

    // Cleartext HTTP/2 (prior knowledge) on the same port.
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = h2
        .get(server.url("/live/main/index.m3u8"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);

    publisher.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_room_goes_offline_after_grace() {
    // Grace is 3 s in the test server options.
    let server = Server::start();
    let key = server.first_key.clone().unwrap();
    server
        .publish_fixture(&key, "h264-main-video-only-360p30.flv")
        .await
        .unwrap();
    poll_text(
        &server.url("/live/main/stream.m3u8"),
        Duration::from_secs(10),
        |t| t.contains("#EXT-X-ENDLIST"),
    )
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let s = status(&server, "/live/main/index.m3u8").await;
        if s == 404 {
            break;
        }
        assert_eq!(s, 200);
        assert!(
            std::time::Instant::now() < deadline,
            "room still served 10 s after it ended"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
