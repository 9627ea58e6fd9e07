//! wechatpy, a real WeChat SDK from PyPI (installed by scripts/test), as the independent
//! implementation the tests check wxtoken against: required, never skipped.

use std::io::Write as _;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::support::process::succeeds;

/// Reads `{"token","key","appid","op","messages":[..]}` on stdin and writes the results as a
/// JSON list. `seal`: each message `{xml,timestamp,nonce}` becomes the push body WeChat sends
/// (`AppId` and `Encrypt`) and its msg_signature. `open`: each `{body,msg_signature,timestamp,
/// nonce}` becomes the decrypted XML. All crypto is wechatpy's.
const WECHATPY: &str = r#"
import json, sys
import xmltodict
from wechatpy.crypto import WeChatCrypto
req = json.load(sys.stdin)
crypto = WeChatCrypto(req["token"], req["key"], req["appid"])
out = []
for m in req["messages"]:
    if req["op"] == "seal":
        reply = xmltodict.parse(crypto.encrypt_message(m["xml"], m["nonce"], m["timestamp"]))["xml"]
        body = "<xml><AppId><![CDATA[%s]]></AppId><Encrypt><![CDATA[%s]]></Encrypt></xml>" % (
            req["appid"], reply["Encrypt"])
        out.append({"body": body, "msg_signature": reply["MsgSignature"]})
    else:
        out.append(crypto.decrypt_message(m["body"], m["msg_signature"], m["timestamp"], m["nonce"]))
json.dump(out, sys.stdout)
"#;

pub fn require_wechatpy() {
    let found = Command::new("python3")
        .args(["-c", "import wechatpy, xmltodict"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        found,
        "python3 with wechatpy not found: run scripts/test, which installs it from PyPI"
    );
}

/// Runs a Python `script` (one using wechatpy) with `args`, off the test's thread, and returns
/// what it printed; panics with its stderr when it fails.
pub async fn python(script: &'static str, args: Vec<String>) -> String {
    let out = actix_web::rt::task::spawn_blocking(move || {
        succeeds(Command::new("python3").arg("-c").arg(script).args(args))
    })
    .await
    .expect("blocking task");
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Runs the wechatpy script with `request` on stdin.
pub fn wechatpy(request: Value) -> Vec<Value> {
    let mut child = Command::new("python3")
        .args(["-c", WECHATPY])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "wechatpy failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("wechatpy printed JSON")
}
