//! The review console (`/review`): sign-in with the admin token, listing,
//! decisions with CSRF protection, narrowing only (DTR-24), escaping.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::*;
use dtr_server::clock::Clock;

async fn sign_in(h: &Harness) -> String {
    let r = h
        .post_raw(
            "/review/login",
            None,
            "application/x-www-form-urlencoded",
            form(&[("token", ADMIN)]).into_bytes(),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let set = r.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"));
    set.split(';').next().unwrap().to_owned()
}

async fn get(h: &Harness, path: &str, cookie: &str) -> Resp {
    h.send(
        Request::get(path)
            .header(header::COOKIE, cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await
}

async fn post(h: &Harness, path: &str, cookie: &str, pairs: &[(&str, &str)]) -> Resp {
    h.send(
        Request::post(path)
            .header(header::COOKIE, cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(form(pairs)))
            .unwrap(),
    )
    .await
}

fn csrf(page: &str) -> String {
    let i = page.find("name=\"csrf\" value=\"").unwrap() + "name=\"csrf\" value=\"".len();
    page[i..].split('"').next().unwrap().to_owned()
}

#[tokio::test]
async fn sign_in_is_required() {
    let h = harness().await;
    let r = h.get("/review").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text.contains("Admin token"), "a sign-in form");
    let wrong = h
        .post_raw(
            "/review/login",
            None,
            "application/x-www-form-urlencoded",
            form(&[("token", "nope")]).into_bytes(),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.headers.get(header::SET_COOKIE).is_none());
    let forged = get(&h, "/review", "dtr_review=99999999999.forged").await;
    assert!(
        forged.text.contains("Admin token"),
        "a forged cookie is no sign-in"
    );
}

#[tokio::test]
async fn approve_with_narrowing_from_the_console() {
    let h = harness().await;
    let code = h.defer("payments read").await;
    let cookie = sign_in(&h).await;
    let list = get(&h, "/review", &cookie).await;
    let id = h.newest_id().await;
    assert!(list.text.contains(&id));
    assert!(!list.text.contains(&code), "reviewers never see the code");

    let detail = get(&h, &format!("/review/{id}"), &cookie).await;
    assert!(detail.text.contains("name=\"scope_payments\""));
    let token = csrf(&detail.text);

    // Without the CSRF token nothing happens.
    let r = post(
        &h,
        &format!("/review/{id}/approve"),
        &cookie,
        &[("scope_read", "1")],
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        h.admin("GET", &format!("/admin/deferrals/{id}"), None)
            .await
            .json["state"],
        "pending"
    );

    // Nothing ticked is refused; ticking only `read` narrows (DTR-24).
    let r = post(
        &h,
        &format!("/review/{id}/approve"),
        &cookie,
        &[("csrf", &token)],
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(r
        .headers
        .get(header::LOCATION)
        .unwrap()
        .to_str()
        .unwrap()
        .contains("error="));
    let r = post(
        &h,
        &format!("/review/{id}/approve"),
        &cookie,
        &[("csrf", &token), ("scope_read", "1"), ("scope_admin", "1")],
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let shown = h
        .admin("GET", &format!("/admin/deferrals/{id}"), None)
        .await
        .json;
    assert_eq!(shown["state"], "approved");
    assert_eq!(
        shown["granted_scope"], "read",
        "an unrequested scope cannot be added"
    );
    let t = h.poll(&code).await;
    assert_eq!(t.json["scope"], "read");
}

#[tokio::test]
async fn deny_progress_and_interaction_from_the_console() {
    let h = harness().await;
    let code = h.defer("payments").await;
    let id = h.newest_id().await;
    let cookie = sign_in(&h).await;
    let token = csrf(&get(&h, &format!("/review/{id}"), &cookie).await.text);
    post(
        &h,
        &format!("/review/{id}/progress"),
        &cookie,
        &[("csrf", &token), ("step", "fraud_check")],
    )
    .await;
    assert_eq!(
        h.poll(&code).await.json["error_description"],
        "step=fraud_check"
    );
    post(
        &h,
        &format!("/review/{id}/interaction"),
        &cookie,
        &[("csrf", &token), ("required", "true")],
    )
    .await;
    h.clock.advance_secs(6);
    assert_eq!(h.poll(&code).await.error(), "interaction_required");
    post(
        &h,
        &format!("/review/{id}/deny"),
        &cookie,
        &[("csrf", &token), ("reason", "no")],
    )
    .await;
    h.clock.advance_secs(6);
    assert_eq!(h.poll(&code).await.error(), "access_denied");
    let again = post(
        &h,
        &format!("/review/{id}/approve"),
        &cookie,
        &[("csrf", &token), ("scope_payments", "1")],
    )
    .await;
    assert!(
        again
            .headers
            .get(header::LOCATION)
            .unwrap()
            .to_str()
            .unwrap()
            .contains("error="),
        "not pending any more"
    );
}

#[tokio::test]
async fn user_controlled_text_is_escaped() {
    let h = harness().await;
    let r = h
        .post(
            "/token",
            SVC,
            &[
                ("grant_type", "client_credentials"),
                ("scope", "payments"),
                ("completion_mode", "deferred"),
                (
                    "authorization_details",
                    r#"[{"type":"payment","creditorName":"<script>alert(1)</script>"}]"#,
                ),
            ],
        )
        .await;
    assert_eq!(r.error(), "authorization_pending");
    let id = h.newest_id().await;
    let cookie = sign_in(&h).await;
    let page = get(&h, &format!("/review/{id}"), &cookie).await;
    assert!(!page.text.contains("<script>"), "no live script");
    assert!(page.text.contains("&lt;script&gt;"), "shown as text");
    assert!(page.headers.get(header::CONTENT_SECURITY_POLICY).is_some());
}

/// carol and dave review for the fraud group, erin for kyc; `payments`
/// needs two fraud approvals, `read` one, `kyc` one from the kyc group.
const TEAM: &str = r#"
issuer = "http://127.0.0.1:8080"
[deferral]
expires_in = 600
interval = 5
[admin]
token = "test-admin-token-0123456789abcdefghij"
[[clients]]
client_id = "svc"
client_secret = "svc-secret"
scope = "read payments kyc"
[[clients]]
client_id = "other"
client_secret = "other-secret"
token_endpoint_auth_method = "client_secret_post"
scope = "read payments kyc"
[[users]]
username = "carol"
password = "carol-password"
roles = ["reviewer"]
groups = ["fraud"]
name = "Carol Example"
[[users]]
username = "dave"
password = "dave-password"
roles = ["reviewer"]
groups = ["fraud"]
[[users]]
username = "erin"
password = "erin-password"
roles = ["reviewer"]
groups = ["kyc"]
[[policy]]
scope_any = ["payments"]
action = "review"
approvers = ["group:fraud"]
approvals_required = 2
[[policy]]
scope_any = ["kyc"]
action = "review"
approvers = ["group:kyc"]
[[policy]]
scope_any = ["read"]
action = "review"
approvers = ["group:fraud"]
"#;

const OPEN_REGISTRATION: &str = r#"
[registration]
enabled = true
open = true
scope = "read payments"
grant_types = ["client_credentials"]
"#;

async fn sign_in_as(h: &Harness, user: &str) -> String {
    let r = h
        .post_raw(
            "/review/login",
            None,
            "application/x-www-form-urlencoded",
            form(&[
                ("username", user),
                ("password", &format!("{user}-password")),
            ])
            .into_bytes(),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let set = r.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap();
    set.split(';').next().unwrap().to_owned()
}

async fn defer_as(h: &Harness, client: (&str, &str), scope: &str, details: Option<&str>) -> String {
    let mut pairs = vec![
        ("grant_type", "client_credentials"),
        ("scope", scope),
        ("completion_mode", "deferred"),
    ];
    if let Some(d) = details {
        pairs.push(("authorization_details", d));
    }
    let r = if client.0 == "other" {
        let mut p = pairs.clone();
        p.push(("client_id", client.0));
        p.push(("client_secret", client.1));
        h.post_raw(
            "/token",
            None,
            "application/x-www-form-urlencoded",
            form(&p).into_bytes(),
        )
        .await
    } else {
        h.post("/token", client, &pairs).await
    };
    assert_eq!(r.error(), "authorization_pending", "{}", r.text);
    h.newest_id().await
}

fn location_of(r: &Resp) -> String {
    r.headers
        .get(header::LOCATION)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn queue_filters_order_and_relative_times() {
    let h = harness_with(TEAM).await;
    let first = defer_as(&h, SVC, "read", None).await;
    h.clock.advance_secs(120);
    let second = defer_as(&h, OTHER, "read", None).await;
    h.clock.advance_secs(180);
    let kyc = defer_as(&h, SVC, "kyc", None).await;
    let cookie = sign_in(&h).await;

    let all = get(&h, "/review", &cookie).await;
    assert_eq!(all.status, StatusCode::OK);
    for id in [&first, &second, &kyc] {
        assert!(all.text.contains(id.as_str()));
    }
    // Newest first by default; oldest first on request.
    assert!(all.text.find(&kyc).unwrap() < all.text.find(&first).unwrap());
    let oldest = get(&h, "/review?order=oldest", &cookie).await;
    assert!(oldest.text.find(&first).unwrap() < oldest.text.find(&kyc).unwrap());
    // Relative times, each with its absolute time kept.
    assert!(all.text.contains(">waiting 5 min</time>"), "{}", all.text);
    assert!(all.text.contains(">expires in 5 min</time>"));
    assert!(all.text.contains("<time datetime=\""));

    let by_client = get(&h, "/review?client=other", &cookie).await;
    assert!(by_client.text.contains(&second));
    assert!(!by_client.text.contains(&first) && !by_client.text.contains(&kyc));
    let by_scope = get(&h, "/review?scope=kyc", &cookie).await;
    assert!(by_scope.text.contains(&kyc) && !by_scope.text.contains(&first));
    let by_group = get(&h, "/review?group=fraud", &cookie).await;
    assert!(by_group.text.contains(&first) && !by_group.text.contains(&kyc));
    let by_grant = get(&h, "/review?grant=authorization_code", &cookie).await;
    assert!(by_grant.text.contains("Nothing here."));
    let by_grant = get(&h, "/review?grant=client_credentials", &cookie).await;
    assert!(by_grant.text.contains(&first));

    // A reviewer's queue is what they may decide.
    let erin = sign_in_as(&h, "erin").await;
    let mine = get(&h, "/review", &erin).await;
    assert!(mine.text.contains(&kyc) && !mine.text.contains(&first));

    // Decided ones move to the history, with outcome and decider.
    let token = csrf(&get(&h, &format!("/review/{kyc}"), &erin).await.text);
    let r = post(
        &h,
        &format!("/review/{kyc}/deny"),
        &erin,
        &[("csrf", &token), ("reason", "no")],
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    h.clock.advance_secs(60);
    let pending = get(&h, "/review", &erin).await;
    assert!(!pending.text.contains(&kyc));
    let history = get(&h, "/review?state=history", &erin).await;
    assert!(history.text.contains(&kyc), "{}", history.text);
    assert!(history.text.contains("<td>denied</td><td>erin</td>"));
    assert!(history.text.contains(">1 min ago</time>"));
}

#[tokio::test]
async fn four_eyes_progress_in_queue_and_detail() {
    let h = harness_with(TEAM).await;
    let id = defer_as(&h, SVC, "payments", None).await;
    let carol = sign_in_as(&h, "carol").await;
    let token = csrf(&get(&h, &format!("/review/{id}"), &carol).await.text);
    let r = post(
        &h,
        &format!("/review/{id}/approve"),
        &carol,
        &[("csrf", &token), ("scope_payments", "1")],
    )
    .await;
    assert!(location_of(&r).contains("done="), "{}", location_of(&r));
    let dave = sign_in_as(&h, "dave").await;
    let queue = get(&h, "/review", &dave).await;
    assert!(
        queue.text.contains("1 of 2 approvals, by carol"),
        "{}",
        queue.text
    );
    let detail = get(&h, &format!("/review/{id}"), &dave).await;
    assert!(detail.text.contains("<h2>Approvals</h2>"));
    assert!(detail.text.contains("carol allowed <code>payments</code>"));
    assert!(detail.text.contains("<h2>Event log</h2>"));
    assert!(detail.text.contains("<strong>approval</strong> by carol"));
}

#[tokio::test]
async fn payment_details_render_readably() {
    let h = harness().await;
    let details = r#"[{"type":"payment_initiation","instructedAmount":{"amount":"123.50","currency":"EUR"},"creditorName":"Merchant A","creditorAccount":{"iban":"DE02100100109307118603"}},{"type":"account_information","access":{"accounts":["acc-1"],"balances":true}}]"#;
    let r = h
        .post(
            "/token",
            SVC,
            &[
                ("grant_type", "client_credentials"),
                ("scope", "payments"),
                ("completion_mode", "deferred"),
                ("authorization_details", details),
            ],
        )
        .await;
    assert_eq!(r.error(), "authorization_pending", "{}", r.text);
    let id = h.newest_id().await;
    let cookie = sign_in(&h).await;
    let page = get(&h, &format!("/review/{id}"), &cookie).await;
    let t = &page.text;
    assert!(
        t.contains("<strong class=\"amount\">123.50 EUR</strong>"),
        "{t}"
    );
    assert!(t.contains("<strong class=\"creditor\">Merchant A</strong>"));
    assert!(t.contains("DE02100100109307118603"));
    // Unknown types: their fields, flattened with dotted keys.
    assert!(t.contains("<dt>access.balances</dt><dd>true</dd>"), "{t}");
    assert!(t.contains("<dt>access.accounts.0</dt><dd>acc-1</dd>"));
    assert!(!t.contains("\"instructedAmount\""), "not raw JSON");
}

#[tokio::test]
async fn approved_until_from_the_console() {
    let h = harness().await;
    let code = h.defer("payments").await;
    let id = h.newest_id().await;
    let cookie = sign_in(&h).await;
    let detail = get(&h, &format!("/review/{id}"), &cookie).await;
    assert!(detail.text.contains("name=\"approved_until\""));
    let token = csrf(&detail.text);
    let bad = post(
        &h,
        &format!("/review/{id}/approve"),
        &cookie,
        &[
            ("csrf", &token),
            ("scope_payments", "1"),
            ("approved_until", "soon"),
        ],
    )
    .await;
    assert!(location_of(&bad).contains("error="));
    let until_ms = (h.clock.now_ms() / 1000 + 3600) * 1000;
    let until = dtr_server::clock::rfc3339(until_ms);
    let r = post(
        &h,
        &format!("/review/{id}/approve"),
        &cookie,
        &[
            ("csrf", &token),
            ("scope_payments", "1"),
            ("approved_until", &until),
        ],
    )
    .await;
    assert!(location_of(&r).contains("done="), "{}", location_of(&r));
    let shown = h
        .admin("GET", &format!("/admin/deferrals/{id}"), None)
        .await
        .json;
    assert_eq!(shown["state"], "approved");
    assert!(shown.to_string().contains(&until), "{shown}");
    assert_eq!(h.poll(&code).await.status, StatusCode::OK);
}

#[tokio::test]
async fn client_name_and_details_are_escaped() {
    let h = harness_with(&format!("{CONFIG}\n{OPEN_REGISTRATION}")).await;
    let reg = h
        .send(
            Request::post("/register")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(
                    serde_json::json!({
                        "client_name": "<script>alert('name')</script>",
                        "grant_types": ["client_credentials"],
                        "scope": "read payments",
                    })
                    .to_string(),
                ))
                .unwrap(),
        )
        .await;
    assert_eq!(reg.status, StatusCode::CREATED, "{}", reg.text);
    let client_id = reg.json["client_id"].as_str().unwrap().to_owned();
    let secret = reg.json["client_secret"].as_str().unwrap().to_owned();
    let id = defer_as(
        &h,
        (&client_id, &secret),
        "payments",
        Some(r#"[{"type":"<script>alert(2)</script>","creditorName":"<img src=x onerror=alert(3)>","x":{"y":"<script>alert(4)</script>"}}]"#),
    )
    .await;
    let cookie = sign_in(&h).await;
    let list = get(&h, "/review", &cookie).await;
    assert!(list.text.contains(&id));
    assert!(!list.text.contains("<script>alert"), "{}", list.text);
    assert!(list
        .text
        .contains("&lt;script&gt;alert(&#39;name&#39;)&lt;/script&gt;"));
    let detail = get(&h, &format!("/review/{id}"), &cookie).await;
    assert!(!detail.text.contains("<script"));
    assert!(!detail.text.contains("<img"));
    assert!(detail.text.contains("&lt;script&gt;alert(&#39;name&#39;)"));
    assert!(detail.text.contains("&lt;img src=x onerror=alert(3)&gt;"));
    assert!(detail
        .text
        .contains("<dt>x.y</dt><dd>&lt;script&gt;alert(4)&lt;/script&gt;</dd>"));
}

#[tokio::test]
async fn the_queue_page_allows_only_its_own_script() {
    let h = harness().await;
    let cookie = sign_in(&h).await;
    let list = get(&h, "/review", &cookie).await;
    let csp = list
        .headers
        .get(header::CONTENT_SECURITY_POLICY)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'sha256-"), "{csp}");
    assert!(!csp.contains("unsafe-inline'; script") && !csp.contains("script-src 'unsafe"));
    assert!(csp.contains("connect-src 'self'"));
    assert!(list.text.contains("width=device-width, initial-scale=1"));
    assert!(list.text.contains("<th scope=\"col\">") || list.text.contains("Nothing here."));
    assert!(list.text.contains("<label>Client <select name=\"client\">"));
}

/// Reads the next chunk of an event stream, waiting at most `secs`.
async fn next_chunk(body: &mut axum::body::Body, secs: u64) -> Option<String> {
    use http_body_util::BodyExt;
    let frame = tokio::time::timeout(std::time::Duration::from_secs(secs), body.frame())
        .await
        .ok()??
        .ok()?;
    frame
        .into_data()
        .ok()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// The next `queue` event's data.
async fn next_queue_event(body: &mut axum::body::Body) -> Option<String> {
    for _ in 0..10 {
        let chunk = next_chunk(body, 5).await?;
        if let Some(rest) = chunk.strip_prefix("event: queue\ndata: ") {
            return Some(rest.trim().to_owned());
        }
    }
    None
}

#[tokio::test]
async fn live_updates_for_signed_in_sessions_only() {
    use tower::ServiceExt;
    let h = harness_with(TEAM).await;
    let anonymous = h.get("/review/events").await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert!(!anonymous
        .headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().starts_with("text/event-stream"))
        .unwrap_or(false));
    let forged = get(&h, "/review/events", "dtr_review=forged").await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);

    let carol = sign_in_as(&h, "carol").await;
    let resp = h
        .app
        .clone()
        .oneshot(
            Request::get("/review/events")
                .header(header::COOKIE, &carol)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers().get(header::CONTENT_TYPE).unwrap(),
        "text/event-stream"
    );
    let mut body = resp.into_body();
    let first = next_queue_event(&mut body)
        .await
        .expect("a first queue event");
    // The page carries the same version, so it does not reload for nothing.
    let page = get(&h, "/review", &carol).await;
    assert!(page.text.contains(&format!("data-version=\"{first}\"")));

    // Not carol's to decide: no event.
    defer_as(&h, SVC, "kyc", None).await;
    assert!(
        next_chunk(&mut body, 2).await.is_none(),
        "a deferral carol cannot see changes nothing"
    );
    // Hers: an event with a new version.
    defer_as(&h, SVC, "read", None).await;
    let second = next_queue_event(&mut body).await.expect("a queue event");
    assert_ne!(first, second);
    drop(body);
}

#[tokio::test]
async fn racing_reviewers_decide_once() {
    let h = harness_with(TEAM).await;
    let id = defer_as(&h, SVC, "read", None).await;
    let carol = sign_in_as(&h, "carol").await;
    let dave = sign_in_as(&h, "dave").await;
    let c_token = csrf(&get(&h, &format!("/review/{id}"), &carol).await.text);
    let d_token = csrf(&get(&h, &format!("/review/{id}"), &dave).await.text);
    let path = format!("/review/{id}/approve");
    let c_form = [("csrf", c_token.as_str()), ("scope_read", "1")];
    let d_form = [("csrf", d_token.as_str()), ("scope_read", "1")];
    let (a, b) = tokio::join!(
        post(&h, &path, &carol, &c_form),
        post(&h, &path, &dave, &d_form),
    );
    let (a, b) = (location_of(&a), location_of(&b));
    let done = [&a, &b].iter().filter(|l| l.contains("done=")).count();
    assert_eq!(done, 1, "{a} {b}");
    let lost = if a.contains("done=") { &b } else { &a };
    assert!(lost.contains("error=already+decided"), "{lost}");
    let page = get(&h, lost, if lost == &a { &carol } else { &dave }).await;
    assert!(
        page.text.contains("already decided: approved by "),
        "{}",
        page.text
    );
    let events = h
        .admin("GET", &format!("/admin/deferrals/{id}/events"), None)
        .await;
    let approved = events.text.matches("\"approved\"").count();
    assert_eq!(approved, 1, "{}", events.text);
}

#[tokio::test]
async fn two_reviewers_narrow_a_payment_in_the_console() {
    let config = format!(
        "{TEAM}\n[[authorization_details_types]]\ntype = \"payment_initiation\"\n\
         decrease = [\"instructedAmount.amount\"]\ndroppable = true\n"
    );
    let h = harness_with(&config).await;
    let details = r#"[{"type":"payment_initiation","instructedAmount":{"amount":"500.00","currency":"EUR"},"creditorName":"Merchant A"}]"#;
    let r = h
        .post(
            "/token",
            SVC,
            &[
                ("grant_type", "client_credentials"),
                ("scope", "payments"),
                ("completion_mode", "deferred"),
                ("authorization_details", details),
            ],
        )
        .await;
    let code = r.json["deferral_code"].as_str().unwrap().to_owned();
    let id = h.newest_id().await;

    // carol sees an amount field capped at the request, and lowers it.
    let carol = sign_in_as(&h, "carol").await;
    let page = get(&h, &format!("/review/{id}"), &carol).await;
    assert!(
        page.text
            .contains("name=\"ad_0_instructedAmount.amount\" value=\"500.00\" max=\"500.00\""),
        "{}",
        page.text
    );
    // Raising it is not a narrowing: refused, nothing recorded.
    let raised = post(
        &h,
        &format!("/review/{id}/approve"),
        &carol,
        &[
            ("csrf", &csrf(&page.text)),
            ("scope_payments", "1"),
            ("ad_0_keep", "1"),
            ("ad_0_instructedAmount.amount", "900"),
        ],
    )
    .await;
    assert!(
        location_of(&raised).contains("error="),
        "{}",
        location_of(&raised)
    );
    let lowered = post(
        &h,
        &format!("/review/{id}/approve"),
        &carol,
        &[
            ("csrf", &csrf(&page.text)),
            ("scope_payments", "1"),
            ("ad_0_keep", "1"),
            ("ad_0_instructedAmount.amount", "250.00"),
        ],
    )
    .await;
    assert!(
        location_of(&lowered).contains("done="),
        "{}",
        location_of(&lowered)
    );
    // dave completes the four-eyes approval as asked; carol's cap stands.
    let dave = sign_in_as(&h, "dave").await;
    let page = get(&h, &format!("/review/{id}"), &dave).await;
    assert!(page.text.contains("1 of 2 approvals"), "{}", page.text);
    let done = post(
        &h,
        &format!("/review/{id}/approve"),
        &dave,
        &[
            ("csrf", &csrf(&page.text)),
            ("scope_payments", "1"),
            ("ad_0_keep", "1"),
            ("ad_0_instructedAmount.amount", "500.00"),
        ],
    )
    .await;
    assert!(
        location_of(&done).contains("done="),
        "{}",
        location_of(&done)
    );
    let token = h.poll(&code).await;
    assert_eq!(token.status, StatusCode::OK, "{}", token.text);
    assert_eq!(
        token.json["authorization_details"][0]["instructedAmount"]["amount"],
        "250.00"
    );
}
