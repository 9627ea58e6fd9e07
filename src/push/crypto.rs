//! WeChat's message encryption for third-party platforms (the scheme of its `WXBizMsgCrypt`
//! samples): verifying and opening the encrypted pushes WeChat sends to a platform, and
//! sealing them the same way (for the fake WeChat and the tests).
//!
//! The scheme, as WeChat documents it ("消息加解密技术方案"):
//! - The EncodingAESKey is 43 base64 characters; the AES key is the base64 decoding of the
//!   key plus `=`, 32 bytes. The cipher is AES-256-CBC with the key's first 16 bytes as IV.
//! - The plaintext is 16 random bytes, the message length as 4 big-endian bytes, the message
//!   (the inner XML) and the appid, padded with PKCS#7 to a multiple of **32** bytes, so a
//!   padding byte is 1 to 32 (not 1 to 16 as with AES's block size).
//! - `msg_signature` (a query parameter) is the hex SHA-1 of the token, timestamp, nonce and
//!   the base64 ciphertext (`<Encrypt>` in the body), sorted as strings and concatenated.
//!
//! [`MsgCrypto::open`] checks the signature first, in constant time, and only then decrypts.
//! So the padding and length checks behind it are not an oracle: a sender who cannot sign
//! never learns how decryption failed. The signature covers the ciphertext but not the body's
//! other fields, so only `<Encrypt>` is read from the body; the inner XML's own `AppId` is what
//! the caller trusts, and the appid at the plaintext's end must be this platform's.
//!
//! Freshness and replays are not this module's concern: see [`super::replay`], which runs
//! after a successful `open`.

use aes::Aes256;
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::Engine;
use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use rand::distr::{Alphanumeric, SampleString};
use secrecy::{ExposeSecret, SecretString};
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

use super::xml::{push_cdata_field, Fields, XmlError};

/// The length of an EncodingAESKey, in characters.
pub const ENCODING_AES_KEY_LEN: usize = 43;

/// The largest push body accepted, in bytes. A ticket push is under 1 KiB and authorization
/// events are about as small; the limit leaves room for event kinds with more fields while
/// keeping a hostile body from costing more than a moment of parsing.
pub const MAX_PUSH_BYTES: usize = 128 * 1024;

/// PKCS#7 block size of the scheme (twice AES's block).
const PAD_BLOCK: usize = 32;
/// AES's block size: a ciphertext is a whole number of these.
const AES_BLOCK: usize = 16;
/// The random prefix of every plaintext.
const RANDOM_LEN: usize = 16;
/// The random prefix plus the length field.
const HEADER_LEN: usize = RANDOM_LEN + 4;

/// WeChat's EncodingAESKey decodes with the last character's low bits set (its own sample key
/// ends in `G`), which strict base64 refuses; WeChat's decoders ignore them, so this one does.
const KEY_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);

type Encryptor = cbc::Encryptor<Aes256>;
type Decryptor = cbc::Decryptor<Aes256>;

/// The signing and encryption keys of one platform, and its appid. `Debug` shows the appid
/// only.
#[derive(Clone)]
pub struct MsgCrypto {
    token: SecretString,
    key: [u8; 32],
    appid: String,
}

/// The query parameters of a push that the signature and the replay check need. Other
/// parameters WeChat sends (`encrypt_type=aes`, the plain `signature`) are ignored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Envelope {
    pub timestamp: String,
    pub nonce: String,
    pub msg_signature: String,
}

/// A push as WeChat sends it: the POST body and the query parameters that go with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// `<xml><AppId>..</AppId><Encrypt>..</Encrypt></xml>`.
    pub body: String,
    pub timestamp: String,
    pub nonce: String,
    pub msg_signature: String,
}

impl Sealed {
    /// The query string WeChat puts on the push URL:
    /// `timestamp=..&nonce=..&encrypt_type=aes&msg_signature=..`.
    pub fn query(&self) -> String {
        format!(
            "timestamp={}&nonce={}&encrypt_type=aes&msg_signature={}",
            url_encode(&self.timestamp),
            url_encode(&self.nonce),
            url_encode(&self.msg_signature)
        )
    }

    /// The envelope a receiver reads back from [`Sealed::query`].
    pub fn envelope(&self) -> Envelope {
        Envelope {
            timestamp: self.timestamp.clone(),
            nonce: self.nonce.clone(),
            msg_signature: self.msg_signature.clone(),
        }
    }
}

/// Why a platform's message keys were refused. Never quotes the key or the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the EncodingAESKey must be {ENCODING_AES_KEY_LEN} characters, got {0}")]
    Length(usize),
    #[error("the EncodingAESKey is not base64 (WeChat's keys are letters and digits)")]
    NotBase64,
    #[error("the message token is empty")]
    EmptyToken,
    #[error("the appid must be 1 to 64 ASCII letters, digits, '_' or '-'")]
    AppId,
}

/// Why a push was refused. [`OpenError::http_status`] gives the status to answer with.
/// Never quotes the key, the token or any of the plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("msg_signature does not match the message")]
    BadSignature,
    #[error("the push body is not the expected XML: {0}")]
    MalformedBody(XmlError),
    #[error("<Encrypt> is not base64")]
    NotBase64,
    #[error("the ciphertext is {0} bytes, not a positive multiple of {AES_BLOCK}")]
    CiphertextLength(usize),
    #[error("the decrypted message has invalid padding")]
    BadPadding,
    #[error("the decrypted message's length field exceeds its data")]
    BadLength,
    #[error("the decrypted message is not UTF-8")]
    NotUtf8,
    #[error("the message is addressed to another appid")]
    WrongAppId,
}

impl OpenError {
    /// The HTTP status for this refusal:
    /// - 401 for a signature that does not match: the sender has not shown it holds the token.
    /// - 400 for everything else, a wrong appid included. Those messages carry a valid
    ///   signature, so the sender holds this platform's token and key, and the request is not
    ///   an authentication failure but a misaddressed or broken one: typically two platforms
    ///   configured with the same token and key, and a push for one delivered to the other's
    ///   URL. Storing it would put one platform's ticket under the other (WeChat then answers
    ///   61006); a 400 keeps it out and tells the operator the push was misrouted, where a 401
    ///   would send them looking for a wrong token.
    pub fn http_status(&self) -> u16 {
        match self {
            OpenError::BadSignature => 401,
            _ => 400,
        }
    }
}

impl MsgCrypto {
    /// Builds the keys of a platform from its message token, its 43-character EncodingAESKey
    /// and its (component) appid.
    pub fn new(token: &str, encoding_aes_key: &str, appid: &str) -> Result<MsgCrypto, KeyError> {
        if token.is_empty() {
            return Err(KeyError::EmptyToken);
        }
        let chars = encoding_aes_key.chars().count();
        if chars != ENCODING_AES_KEY_LEN {
            return Err(KeyError::Length(chars));
        }
        let mut padded = String::with_capacity(ENCODING_AES_KEY_LEN + 1);
        padded.push_str(encoding_aes_key);
        padded.push('=');
        let decoded = KEY_BASE64
            .decode(padded.as_bytes())
            .map_err(|_| KeyError::NotBase64)?;
        let key: [u8; 32] = decoded.try_into().map_err(|_| KeyError::NotBase64)?;
        let appid_ok = !appid.is_empty()
            && appid.len() <= 64
            && appid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !appid_ok {
            return Err(KeyError::AppId);
        }
        Ok(MsgCrypto {
            token: SecretString::from(token.to_owned()),
            key,
            appid: appid.to_owned(),
        })
    }

    /// The appid messages are sealed for and must be addressed to.
    pub fn appid(&self) -> &str {
        &self.appid
    }

    /// The `msg_signature` of a ciphertext: hex SHA-1 of the sorted, concatenated token,
    /// timestamp, nonce and `encrypt`.
    pub fn signature(&self, timestamp: &str, nonce: &str, encrypt: &str) -> String {
        hex::encode(self.digest(timestamp, nonce, encrypt))
    }

    fn digest(&self, timestamp: &str, nonce: &str, encrypt: &str) -> [u8; 20] {
        let mut parts = [self.token.expose_secret(), timestamp, nonce, encrypt];
        parts.sort_unstable();
        let mut h = Sha1::new();
        for p in parts {
            h.update(p.as_bytes());
        }
        h.finalize().into()
    }

    /// Whether `msg_signature` signs `encrypt`, compared in constant time. Hex is accepted in
    /// either case; anything that is not 40 hex digits does not match.
    fn signed(&self, q: &Envelope, encrypt: &str) -> bool {
        let expected = self.digest(&q.timestamp, &q.nonce, encrypt);
        let mut given = [0u8; 20];
        if hex::decode_to_slice(q.msg_signature.as_bytes(), &mut given).is_err() {
            return false;
        }
        bool::from(expected.ct_eq(&given))
    }

    /// Opens a push: reads `<Encrypt>` from the body, verifies `msg_signature` over it,
    /// decrypts, checks the padding, the length field and that the plaintext ends with this
    /// platform's appid, and returns the inner XML.
    pub fn open(&self, q: &Envelope, body: &[u8]) -> Result<String, OpenError> {
        let fields = Fields::parse(body, MAX_PUSH_BYTES).map_err(OpenError::MalformedBody)?;
        let encrypt = fields
            .required("Encrypt")
            .map_err(OpenError::MalformedBody)?;
        self.open_encrypt(q, encrypt)
    }

    /// Opens the `Encrypt` value of a push however its body carried it (a JSON push of a Mini
    /// Program carries it as a JSON field): verifies `msg_signature`, then decrypts.
    pub fn open_encrypt(&self, q: &Envelope, encrypt: &str) -> Result<String, OpenError> {
        if !self.signed(q, encrypt) {
            return Err(OpenError::BadSignature);
        }
        self.decrypt(encrypt)
    }

    /// Opens an `Encrypt` value whose receive id is not known in advance: verifies
    /// `msg_signature`, decrypts, and returns the message whatever receive id ends it.
    ///
    /// Why this exists: WeCom encrypts a suite's URL-check `echostr` for the service
    /// provider's corpid, not for the suite id its pushes carry. A suite configured without
    /// its provider does not know that corpid, so it checks the signature, which proves the
    /// sender holds the suite's Token, and leaves the receive id unchecked. Only the URL check
    /// uses this: a push's receive id is always checked ([`MsgCrypto::open`]).
    pub fn open_encrypt_any_receiver(
        &self,
        q: &Envelope,
        encrypt: &str,
    ) -> Result<String, OpenError> {
        if !self.signed(q, encrypt) {
            return Err(OpenError::BadSignature);
        }
        self.decrypt_for(encrypt, None)
    }

    /// Decrypts a base64 ciphertext whose signature has been checked.
    fn decrypt(&self, encrypt: &str) -> Result<String, OpenError> {
        self.decrypt_for(encrypt, Some(self.appid.as_bytes()))
    }

    /// Decrypts, checking that the receive id is `receiver` when one is given.
    fn decrypt_for(&self, encrypt: &str, receiver: Option<&[u8]>) -> Result<String, OpenError> {
        let mut buf = STANDARD
            .decode(encrypt.as_bytes())
            .map_err(|_| OpenError::NotBase64)?;
        if buf.is_empty() || !buf.len().is_multiple_of(AES_BLOCK) {
            return Err(OpenError::CiphertextLength(buf.len()));
        }
        let buf_len = buf.len();
        let plain = Decryptor::new(&self.key.into(), &self.iv().into())
            .decrypt_padded::<NoPadding>(&mut buf)
            .map_err(|_| OpenError::CiphertextLength(buf_len))?;
        let content = unpad(plain)?;
        if content.len() < HEADER_LEN {
            return Err(OpenError::BadLength);
        }
        let (header, rest) = content.split_at(HEADER_LEN);
        let mut len = [0u8; 4];
        len.copy_from_slice(&header[RANDOM_LEN..]);
        let len = usize::try_from(u32::from_be_bytes(len)).map_err(|_| OpenError::BadLength)?;
        if len > rest.len() {
            return Err(OpenError::BadLength);
        }
        let (msg, appid) = rest.split_at(len);
        if receiver.is_some_and(|r| appid != r) {
            return Err(OpenError::WrongAppId);
        }
        String::from_utf8(msg.to_vec()).map_err(|_| OpenError::NotUtf8)
    }

    /// Seals `xml` as WeChat pushes it: encrypted for this platform's appid with a fresh random
    /// prefix, in the push body, with the signature for the query string.
    ///
    /// # Panics
    /// If `xml` is 4 GiB or longer, which the length field cannot express. The fake and the
    /// tests seal messages of a few hundred bytes.
    pub fn seal(&self, xml: &str, timestamp: &str, nonce: &str) -> Sealed {
        // Letters and digits, as WeChat's samples use: receivers that read the whole plaintext
        // as text before splitting it keep working.
        let prefix = Alphanumeric.sample_string(&mut rand::rng(), RANDOM_LEN);
        let mut random = [0u8; RANDOM_LEN];
        random.copy_from_slice(prefix.as_bytes());
        self.seal_with(&random, xml, timestamp, nonce)
    }

    fn seal_with(
        &self,
        random: &[u8; RANDOM_LEN],
        xml: &str,
        timestamp: &str,
        nonce: &str,
    ) -> Sealed {
        let encrypt = self.encrypt(random, xml);
        let msg_signature = self.signature(timestamp, nonce, &encrypt);
        let mut body = String::with_capacity(encrypt.len() + self.appid.len() + 80);
        body.push_str("<xml>");
        push_cdata_field(&mut body, "AppId", &self.appid);
        push_cdata_field(&mut body, "Encrypt", &encrypt);
        body.push_str("</xml>");
        Sealed {
            body,
            timestamp: timestamp.to_owned(),
            nonce: nonce.to_owned(),
            msg_signature,
        }
    }

    /// Encrypts a passive reply (or any message) for this appid and signs it: the `Encrypt`
    /// value and its `MsgSignature`, which the caller writes in the format of the push it
    /// answers.
    ///
    /// # Panics
    /// If `message` is 4 GiB or longer (replies are bounded far below by their reader).
    pub fn encrypt_signed(&self, message: &str, timestamp: &str, nonce: &str) -> (String, String) {
        let prefix = Alphanumeric.sample_string(&mut rand::rng(), RANDOM_LEN);
        let mut random = [0u8; RANDOM_LEN];
        random.copy_from_slice(prefix.as_bytes());
        let encrypt = self.encrypt(&random, message);
        let signature = self.signature(timestamp, nonce, &encrypt);
        (encrypt, signature)
    }

    /// The base64 ciphertext of `random ++ len(xml) ++ xml ++ appid`, padded to 32 bytes.
    fn encrypt(&self, random: &[u8; RANDOM_LEN], xml: &str) -> String {
        let len = u32::try_from(xml.len()).expect("a sealed message is under 4 GiB");
        let content = HEADER_LEN + xml.len() + self.appid.len();
        let pad = PAD_BLOCK - content % PAD_BLOCK;
        let mut buf = Vec::with_capacity(content + pad);
        buf.extend_from_slice(random);
        buf.extend_from_slice(&len.to_be_bytes());
        buf.extend_from_slice(xml.as_bytes());
        buf.extend_from_slice(self.appid.as_bytes());
        // `pad` is 1..=32, so it fits a byte.
        buf.resize(content + pad, pad as u8);
        let total = buf.len();
        let cipher = Encryptor::new(&self.key.into(), &self.iv().into())
            .encrypt_padded::<NoPadding>(&mut buf, total)
            .expect("the buffer is a whole number of blocks");
        STANDARD.encode(cipher)
    }

    fn iv(&self) -> [u8; 16] {
        let mut iv = [0u8; 16];
        iv.copy_from_slice(&self.key[..16]);
        iv
    }
}

impl std::fmt::Debug for MsgCrypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MsgCrypto")
            .field("appid", &self.appid)
            .field("token", &"[redacted]")
            .field("key", &"[redacted]")
            .finish()
    }
}

/// Strips PKCS#7 padding of the scheme's 32-byte blocks: the last byte `n` is 1..=32 and the
/// last `n` bytes all equal it.
fn unpad(plain: &[u8]) -> Result<&[u8], OpenError> {
    let n = usize::from(*plain.last().ok_or(OpenError::BadPadding)?);
    if n == 0 || n > PAD_BLOCK || n > plain.len() {
        return Err(OpenError::BadPadding);
    }
    let (content, pad) = plain.split_at(plain.len() - n);
    if pad.iter().any(|&b| usize::from(b) != n) {
        return Err(OpenError::BadPadding);
    }
    Ok(content)
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// WeChat's published sample (the Python `WXBizMsgCrypt` sample's `Sample.py`, and the
    /// same values in its other languages): key, token, appid, a push and its signature.
    const SAMPLE_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    const SAMPLE_TOKEN: &str = "spamtest";
    const SAMPLE_APPID: &str = "wx2c2769f8efd9abc2";
    const SAMPLE_TIMESTAMP: &str = "1409735669";
    const SAMPLE_NONCE: &str = "1320562132";
    const SAMPLE_SIGNATURE: &str = "5d197aaffba7e9b25a30732f161a50dee96bd5fa";
    const SAMPLE_ENCRYPT: &str = "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2LdJF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE=";
    /// The sample's push body: in compatible mode WeChat sends the fields in the clear next to
    /// `<Encrypt>`, which is how the sample publishes the plaintext.
    const SAMPLE_BODY_FIELDS: &str = "<ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><FromUserName><![CDATA[oyORnuP8q7ou2gfYjqLzSIWZf0rs]]></FromUserName><CreateTime>1409735668</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[abcdteT]]></Content><MsgId>6054768590064713728</MsgId>";

    /// WeChat's Java sample (`WXBizMsgCryptTest`): a fixed random prefix, a plaintext and the
    /// exact ciphertext, for the same key under another appid.
    const JAVA_APPID: &str = "wxb11529c136998cb6";
    const JAVA_RANDOM: &[u8; 16] = b"aaaabbbbccccdddd";
    const JAVA_REPLY: &str = "我是中文abcd123";
    const JAVA_ENCRYPTED: &str =
        "jn1L23DB+6ELqJ+6bruv21Y6MD7KeIfP82D6gU39rmkgczbWwt5+3bnyg5K55bgVtVzd832WzZGMhkP72vVOfg==";
    const JAVA_REPLY2: &str = "<xml><ToUserName><![CDATA[oia2Tj我是中文jewbmiOUlr6X-1crbLOvLw]]></ToUserName><FromUserName><![CDATA[gh_7f083739789a]]></FromUserName><CreateTime>1407743423</CreateTime><MsgType><![CDATA[video]]></MsgType><Video><MediaId><![CDATA[eYJ1MbwPRJtOvIEabaxHs7TX2D-HV71s79GUxqdUkjm6Gs2Ed1KF3ulAOA9H1xG0]]></MediaId><Title><![CDATA[testCallBackReplyVideo]]></Title><Description><![CDATA[testCallBackReplyVideo]]></Description></Video></xml>";
    const JAVA_ENCRYPTED2: &str = "jn1L23DB+6ELqJ+6bruv23M2GmYfkv0xBh2h+XTBOKVKcgDFHle6gqcZ1cZrk3e1qjPQ1F4RsLWzQRG9udbKWesxlkupqcEcW7ZQweImX9+wLMa0GaUzpkycA8+IamDBxn5loLgZpnS7fVAbExOkK5DYHBmv5tptA9tklE/fTIILHR8HLXa5nQvFb3tYPKAlHF3rtTeayNf0QuM+UW/wM9enGIDIJHF7CLHiDNAYxr+r+OrJCmPQyTy8cVWlu9iSvOHPT/77bZqJucQHQ04sq7KZI27OcqpQNSto2OdHCoTccjggX5Z9Mma0nMJBU+jLKJ38YB1fBIz+vBzsYjrTmFQ44YfeEuZ+xRTQwr92vhA9OxchWVINGC50qE/6lmkwWTwGX9wtQpsJKhP+oS7rvTY8+VdzETdfakjkwQ5/Xka042OlUb1/slTwo4RscuQ+RdxSGvDahxAJ6+EAjLt9d8igHngxIbf6YyqqROxuxqIeIch3CssH/LqRs+iAcILvApYZckqmA7FNERspKA5f8GoJ9sv8xmGvZ9Yrf57cExWtnX8aCMMaBropU/1k+hKP5LVdzbWCG0hGwx/dQudYR/eXp3P0XxjlFiy+9DMlaFExWUZQDajPkdPrEeOwofJb";

    const TOKEN: &str = "platform-token";
    const KEY: &str = "Aq3bX9kLm2Pz7Rt5Vw8Yc1Ef4Gh6Jn0Qs2Uv4Xy6Za8";
    const APPID: &str = "wx3c1f0a9d8e7b6a51";

    fn sample() -> MsgCrypto {
        MsgCrypto::new(SAMPLE_TOKEN, SAMPLE_KEY, SAMPLE_APPID).unwrap()
    }

    fn ours() -> MsgCrypto {
        MsgCrypto::new(TOKEN, KEY, APPID).unwrap()
    }

    fn sample_envelope() -> Envelope {
        Envelope {
            timestamp: SAMPLE_TIMESTAMP.into(),
            nonce: SAMPLE_NONCE.into(),
            msg_signature: SAMPLE_SIGNATURE.into(),
        }
    }

    fn sample_body() -> String {
        format!("<xml>{SAMPLE_BODY_FIELDS}<Encrypt><![CDATA[{SAMPLE_ENCRYPT}]]></Encrypt></xml>")
    }

    /// Encrypts raw `plain` (already padded) under `c`'s key, for the refusal tests that need
    /// a plaintext `seal` would never make.
    fn encrypt_raw(c: &MsgCrypto, plain: &[u8]) -> String {
        let mut buf = plain.to_vec();
        let n = buf.len();
        let out = Encryptor::new(&c.key.into(), &c.iv().into())
            .encrypt_padded::<NoPadding>(&mut buf, n)
            .unwrap();
        STANDARD.encode(out)
    }

    /// The `<Encrypt>` of a sealed push.
    fn encrypt_of(s: &Sealed) -> String {
        let f = Fields::parse(s.body.as_bytes(), MAX_PUSH_BYTES).unwrap();
        f.required("Encrypt").unwrap().to_owned()
    }

    /// A body and envelope carrying `encrypt`, correctly signed.
    fn signed(c: &MsgCrypto, encrypt: &str) -> (Envelope, String) {
        let q = Envelope {
            timestamp: "1700000000".into(),
            nonce: "42".into(),
            msg_signature: c.signature("1700000000", "42", encrypt),
        };
        (
            q,
            format!("<xml><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"),
        )
    }

    #[test]
    fn published_sample_signature_is_reproduced() {
        assert_eq!(
            sample().signature(SAMPLE_TIMESTAMP, SAMPLE_NONCE, SAMPLE_ENCRYPT),
            SAMPLE_SIGNATURE
        );
    }

    #[test]
    fn published_sample_opens_to_its_plaintext() {
        let xml = sample()
            .open(&sample_envelope(), sample_body().as_bytes())
            .unwrap();
        let inner = Fields::parse(xml.as_bytes(), 4096).unwrap();
        let outer =
            Fields::parse(format!("<xml>{SAMPLE_BODY_FIELDS}</xml>").as_bytes(), 4096).unwrap();
        for f in [
            "ToUserName",
            "FromUserName",
            "CreateTime",
            "MsgType",
            "Content",
            "MsgId",
        ] {
            assert_eq!(inner.required(f), outer.required(f), "{f}");
        }
        assert_eq!(inner.len(), 6);
        assert!(xml.starts_with("<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName>\n"));
    }

    #[test]
    fn published_java_sample_ciphertexts_are_reproduced() {
        let c = MsgCrypto::new("pamtest", SAMPLE_KEY, JAVA_APPID).unwrap();
        assert_eq!(c.encrypt(JAVA_RANDOM, JAVA_REPLY), JAVA_ENCRYPTED);
        assert_eq!(c.encrypt(JAVA_RANDOM, JAVA_REPLY2), JAVA_ENCRYPTED2);
        assert_eq!(c.decrypt(JAVA_ENCRYPTED).unwrap(), JAVA_REPLY);
        assert_eq!(c.decrypt(JAVA_ENCRYPTED2).unwrap(), JAVA_REPLY2);
    }

    #[test]
    fn sealed_messages_open_for_every_padding_length() {
        let c = ours();
        // Lengths 0..64 cover every padding value 1..=32 at least once.
        for n in 0..64 {
            let xml = "x".repeat(n);
            let s = c.seal(&xml, "1700000000", "nonce-1");
            let encrypt = encrypt_of(&s);
            assert_eq!(
                s.msg_signature,
                c.signature("1700000000", "nonce-1", &encrypt)
            );
            assert_eq!(c.open(&s.envelope(), s.body.as_bytes()).unwrap(), xml);
            let raw = STANDARD.decode(&encrypt).unwrap();
            assert_eq!(raw.len() % 32, 0, "padded to 32-byte blocks");
        }
        let s = c.seal("<xml/>", "1", "2");
        assert_eq!(
            Fields::parse(s.body.as_bytes(), 1024)
                .unwrap()
                .required("AppId")
                .unwrap(),
            APPID
        );
        assert_eq!(
            s.query(),
            format!(
                "timestamp=1&nonce=2&encrypt_type=aes&msg_signature={}",
                s.msg_signature
            )
        );
        assert_ne!(c.seal("<xml/>", "1", "2").body, s.body, "random prefix");
    }

    #[test]
    fn signature_is_checked_in_either_case_and_refused_otherwise() {
        let c = sample();
        let body = sample_body();
        let mut q = sample_envelope();
        q.msg_signature = SAMPLE_SIGNATURE.to_uppercase();
        assert!(c.open(&q, body.as_bytes()).is_ok());
        for bad in [
            "5d197aaffba7e9b25a30732f161a50dee96bd5fb",
            "5d197aaffba7e9b25a30732f161a50dee96bd5f",
            "5d197aaffba7e9b25a30732f161a50dee96bd5fa00",
            "zz197aaffba7e9b25a30732f161a50dee96bd5fa",
            "",
        ] {
            q.msg_signature = bad.into();
            assert_eq!(c.open(&q, body.as_bytes()), Err(OpenError::BadSignature));
        }
        // Every signed input matters.
        let mut q = sample_envelope();
        q.nonce = "1320562133".into();
        assert_eq!(c.open(&q, body.as_bytes()), Err(OpenError::BadSignature));
        let mut q = sample_envelope();
        q.timestamp = "1409735670".into();
        assert_eq!(c.open(&q, body.as_bytes()), Err(OpenError::BadSignature));
        let other_token = MsgCrypto::new("spamtesu", SAMPLE_KEY, SAMPLE_APPID).unwrap();
        assert_eq!(
            other_token.open(&sample_envelope(), body.as_bytes()),
            Err(OpenError::BadSignature)
        );
        assert_eq!(OpenError::BadSignature.http_status(), 401);
    }

    #[test]
    fn flipped_ciphertext_byte_is_refused_by_the_signature() {
        let c = ours();
        let s = c.seal("<xml><A>1</A></xml>", "1700000000", "n");
        let mut raw = STANDARD.decode(encrypt_of(&s)).unwrap();
        raw[5] ^= 1;
        let flipped = STANDARD.encode(&raw);
        let body = format!("<xml><Encrypt>{flipped}</Encrypt></xml>");
        assert_eq!(
            c.open(&s.envelope(), body.as_bytes()),
            Err(OpenError::BadSignature)
        );
        // Re-signed (only a token holder can), the flip garbles the first block, the random
        // prefix, which the scheme does not authenticate; a flip in the last block breaks the
        // padding instead.
        let last = raw.len() - 1;
        raw[5] ^= 1;
        raw[last - 16] ^= 0x40;
        let (q, body) = signed(&c, &STANDARD.encode(&raw));
        assert_eq!(c.open(&q, body.as_bytes()), Err(OpenError::BadPadding));
    }

    #[test]
    fn bad_padding_values_are_refused() {
        let c = ours();
        let mut content = Vec::new();
        content.extend_from_slice(b"0123456789abcdef");
        content.extend_from_slice(&3u32.to_be_bytes());
        content.extend_from_slice(b"<a>");
        content.extend_from_slice(APPID.as_bytes());
        let pad_for = |last: u8, fill: u8| {
            let mut p = content.clone();
            let total = p.len().div_ceil(PAD_BLOCK) * PAD_BLOCK + PAD_BLOCK;
            p.resize(total - 1, fill);
            p.push(last);
            p
        };
        // A correct one first, so the refusals below are about the padding alone.
        let n = {
            let len = content.len();
            PAD_BLOCK - len % PAD_BLOCK
        };
        let mut good = content.clone();
        good.resize(content.len() + n, n as u8);
        let (q, body) = signed(&c, &encrypt_raw(&c, &good));
        assert_eq!(c.open(&q, body.as_bytes()).unwrap(), "<a>");

        for (last, fill) in [(0u8, 0u8), (33, 33), (255, 255), (4, 3)] {
            let (q, body) = signed(&c, &encrypt_raw(&c, &pad_for(last, fill)));
            assert_eq!(
                c.open(&q, body.as_bytes()),
                Err(OpenError::BadPadding),
                "pad byte {last}, fill {fill}"
            );
        }
        assert_eq!(OpenError::BadPadding.http_status(), 400);
    }

    #[test]
    fn length_field_beyond_the_data_is_refused() {
        let c = ours();
        for (declared, tail) in [(4u32, "<a>"), (u32::MAX, "<a>")] {
            let mut p = Vec::new();
            p.extend_from_slice(b"0123456789abcdef");
            p.extend_from_slice(&declared.to_be_bytes());
            p.extend_from_slice(tail.as_bytes());
            let n = PAD_BLOCK - p.len() % PAD_BLOCK;
            p.resize(p.len() + n, n as u8);
            let (q, body) = signed(&c, &encrypt_raw(&c, &p));
            assert_eq!(c.open(&q, body.as_bytes()), Err(OpenError::BadLength));
        }
        // Shorter than the random prefix and the length field.
        let mut p = b"0123456789".to_vec();
        p.resize(32, 22);
        let (q, body) = signed(&c, &encrypt_raw(&c, &p));
        assert_eq!(c.open(&q, body.as_bytes()), Err(OpenError::BadLength));
    }

    #[test]
    fn another_platforms_appid_is_refused() {
        // Same token and key, another appid: the signature holds, the appid does not.
        let theirs = MsgCrypto::new(TOKEN, KEY, "wx0000000000000000").unwrap();
        let s = theirs.seal("<xml><A>1</A></xml>", "1700000000", "n");
        let err = ours().open(&s.envelope(), s.body.as_bytes()).unwrap_err();
        assert_eq!(err, OpenError::WrongAppId);
        assert_eq!(err.http_status(), 400);
        // A prefix of ours is not ours.
        let prefix = MsgCrypto::new(TOKEN, KEY, &APPID[..APPID.len() - 1]).unwrap();
        let s = ours().seal("<xml/>", "1", "2");
        assert_eq!(
            prefix.open(&s.envelope(), s.body.as_bytes()),
            Err(OpenError::WrongAppId)
        );
    }

    #[test]
    fn a_url_check_opened_for_any_receiver_still_needs_the_signature() {
        // WeCom's echostr is encrypted for the provider's corpid, which `ours` does not know.
        let provider = MsgCrypto::new(TOKEN, KEY, "ww0a1b2c3d4e5f6a7b").unwrap();
        let (encrypt, signature) = provider.encrypt_signed("echo-1234", "1700000000", "n");
        let q = Envelope {
            timestamp: "1700000000".into(),
            nonce: "n".into(),
            msg_signature: signature,
        };
        assert_eq!(
            ours().open_encrypt(&q, &encrypt),
            Err(OpenError::WrongAppId)
        );
        assert_eq!(
            ours().open_encrypt_any_receiver(&q, &encrypt).as_deref(),
            Ok("echo-1234")
        );
        let forged = Envelope {
            msg_signature: "0".repeat(40),
            ..q
        };
        assert_eq!(
            ours().open_encrypt_any_receiver(&forged, &encrypt),
            Err(OpenError::BadSignature)
        );
    }

    #[test]
    fn undecodable_ciphertexts_are_refused() {
        let c = ours();
        for (encrypt, want) in [
            ("not base64!", OpenError::NotBase64),
            ("QUJD", OpenError::CiphertextLength(3)),
            ("QUJDREVGR0hJSktMTU5PUFE=", OpenError::CiphertextLength(17)),
        ] {
            let (q, body) = signed(&c, encrypt);
            assert_eq!(c.open(&q, body.as_bytes()), Err(want), "{encrypt}");
        }
        // Signed and decryptable, but the message is not UTF-8.
        let mut p = Vec::new();
        p.extend_from_slice(b"0123456789abcdef");
        p.extend_from_slice(&2u32.to_be_bytes());
        p.extend_from_slice(&[0xff, 0xfe]);
        p.extend_from_slice(APPID.as_bytes());
        let n = PAD_BLOCK - p.len() % PAD_BLOCK;
        p.resize(p.len() + n, n as u8);
        let (q, body) = signed(&c, &encrypt_raw(&c, &p));
        assert_eq!(c.open(&q, body.as_bytes()), Err(OpenError::NotUtf8));
    }

    #[test]
    fn malformed_bodies_are_refused_before_anything_else() {
        let c = ours();
        let q = sample_envelope();
        let dup = "<xml><Encrypt>QUJD</Encrypt><Encrypt>QUJD</Encrypt></xml>";
        for (body, want) in [
            ("<xml><AppId>x</AppId></xml>", XmlError::Missing("Encrypt")),
            (dup, XmlError::Duplicate("Encrypt")),
            ("<!DOCTYPE x><xml/>", XmlError::Doctype),
        ] {
            assert_eq!(
                c.open(&q, body.as_bytes()),
                Err(OpenError::MalformedBody(want))
            );
        }
        let huge = vec![b' '; MAX_PUSH_BYTES + 1];
        assert!(matches!(
            c.open(&q, &huge),
            Err(OpenError::MalformedBody(XmlError::TooLarge { .. }))
        ));
        assert_eq!(
            OpenError::MalformedBody(XmlError::Doctype).http_status(),
            400
        );
    }

    #[test]
    fn keys_are_validated() {
        assert_eq!(
            MsgCrypto::new(TOKEN, &KEY[..42], APPID).unwrap_err(),
            KeyError::Length(42)
        );
        assert_eq!(
            MsgCrypto::new(TOKEN, &format!("{KEY}A"), APPID).unwrap_err(),
            KeyError::Length(44)
        );
        assert_eq!(
            MsgCrypto::new(TOKEN, "", APPID).unwrap_err(),
            KeyError::Length(0)
        );
        let not_b64 = format!("{}!", &KEY[..42]);
        assert_eq!(
            MsgCrypto::new(TOKEN, &not_b64, APPID).unwrap_err(),
            KeyError::NotBase64
        );
        let multibyte = format!("{}é", &KEY[..42]);
        assert_eq!(
            MsgCrypto::new(TOKEN, &multibyte, APPID).unwrap_err(),
            KeyError::NotBase64
        );
        assert_eq!(
            MsgCrypto::new("", KEY, APPID).unwrap_err(),
            KeyError::EmptyToken
        );
        for appid in ["", "wx<1>", "wx 1", &"w".repeat(65)] {
            assert_eq!(
                MsgCrypto::new(TOKEN, KEY, appid).unwrap_err(),
                KeyError::AppId
            );
        }
    }

    #[test]
    fn no_secret_or_plaintext_in_debug_or_errors() {
        let c = ours();
        let debug = format!("{c:?}");
        assert!(debug.contains(APPID));
        assert!(!debug.contains(TOKEN) && !debug.contains(KEY), "{debug}");
        assert!(!debug.contains(&format!("{:?}", c.key)));
        let err = MsgCrypto::new(TOKEN, &format!("{}!", &KEY[..42]), APPID).unwrap_err();
        assert!(!err.to_string().contains(&KEY[..10]));
        let theirs = MsgCrypto::new(TOKEN, KEY, "wx0000000000000000").unwrap();
        let s = theirs.seal("<xml><Ticket>secret-ticket</Ticket></xml>", "1", "2");
        let e = c.open(&s.envelope(), s.body.as_bytes()).unwrap_err();
        let text = format!("{e} {e:?}");
        assert!(!text.contains("secret-ticket") && !text.contains("wx0000"));
    }

    #[test]
    fn query_values_are_percent_encoded() {
        let s = Sealed {
            body: String::new(),
            timestamp: "1 2".into(),
            nonce: "a&b=c".into(),
            msg_signature: "ff".into(),
        };
        assert_eq!(
            s.query(),
            "timestamp=1%202&nonce=a%26b%3Dc&encrypt_type=aes&msg_signature=ff"
        );
    }
}
