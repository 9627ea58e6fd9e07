//! The configuration texts tests write: `[[apps]]` and `[[clients]]` tables built from their
//! parts, so a test names only what sets it apart (which apps a client reads, an admin flag)
//! and a change to a table's keys is made in one place.

use std::fmt;

/// A configuration text built table by table, in the order of the calls (TOML attaches bare
/// keys to the table above them, so the order is the caller's to choose).
#[derive(Default)]
pub struct ConfigText(String);

impl ConfigText {
    pub fn new() -> ConfigText {
        ConfigText::default()
    }

    /// Text written as it is: a section of its own (`[proxy]`, `[[platforms]]`, `[store]`).
    pub fn raw(mut self, text: &str) -> ConfigText {
        self.0.push('\n');
        self.0.push_str(text.trim_matches('\n'));
        self.0.push('\n');
        self
    }

    /// An app table.
    pub fn app(self, app: App) -> ConfigText {
        self.raw(&app.to_string())
    }

    /// A client table.
    pub fn client(self, client: Client) -> ConfigText {
        self.raw(&client.to_string())
    }
}

impl fmt::Display for ConfigText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An `[[apps]]` table: its name, the id line and the secret line, then any more keys.
pub struct App {
    lines: Vec<String>,
}

impl App {
    /// An Official Account (or Mini Program) with its AppSecret inline.
    pub fn official(name: &str, appid: &str, secret: &str) -> App {
        App::strings(&[("name", name), ("appid", appid), ("secret", secret)])
    }

    /// An Official Account whose AppSecret is read from the environment variable `var`.
    pub fn official_env(name: &str, appid: &str, var: &str) -> App {
        App::strings(&[("name", name), ("appid", appid), ("secret_env", var)])
    }

    /// A WeCom app with its corpsecret inline.
    pub fn wecom(name: &str, corpid: &str, secret: &str) -> App {
        let kind = ("kind", "wecom");
        App::strings(&[("name", name), kind, ("corpid", corpid), ("secret", secret)])
    }

    /// A table of string keys, in this order.
    fn strings(keys: &[(&str, &str)]) -> App {
        let lines = keys.iter().map(|(k, v)| format!("{k} = \"{v}\"")).collect();
        App { lines }
    }

    /// An Official Account whose secret line the test writes itself (`line`).
    pub fn official_with(name: &str, appid: &str) -> App {
        App::strings(&[("name", name), ("appid", appid)])
    }

    /// One more line of the table, written as it is (`grant = "stable"`).
    pub fn line(mut self, line: &str) -> App {
        self.lines.push(line.to_owned());
        self
    }
}

impl fmt::Display for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "[[apps]]")?;
        self.lines.iter().try_for_each(|l| writeln!(f, "{l}"))
    }
}

/// A `[[clients]]` table: a name, a key, what it may read and what more it may do.
pub struct Client {
    name: String,
    key_line: String,
    /// `apps`, `platforms`, `wecom_suites`, `wecom_providers`: each list it is granted, in the
    /// order given.
    grants: Vec<(&'static str, Vec<String>)>,
    admin: bool,
    proxy: bool,
}

impl Client {
    /// A client whose key is written inline.
    pub fn new(name: &str, key: &str) -> Client {
        Client::keyed(name, format!("key = \"{key}\""))
    }

    /// A client whose key is read from the environment variable `var`.
    pub fn key_env(name: &str, var: &str) -> Client {
        Client::keyed(name, format!("key_env = \"{var}\""))
    }

    /// A client known by its key's SHA-256 digest (hex) only.
    pub fn key_sha256(name: &str, digest: &str) -> Client {
        Client::keyed(name, format!("key_sha256 = \"{digest}\""))
    }

    fn keyed(name: &str, key_line: String) -> Client {
        Client {
            name: name.into(),
            key_line,
            grants: Vec::new(),
            admin: false,
            proxy: false,
        }
    }

    fn grant(mut self, key: &'static str, names: &[&str]) -> Client {
        self.grants
            .push((key, names.iter().map(|n| n.to_string()).collect()));
        self
    }

    /// The apps it may read (`["*"]` for all).
    pub fn apps(self, apps: &[&str]) -> Client {
        self.grant("apps", apps)
    }

    /// The platforms it may read (`["*"]` for all).
    pub fn platforms(self, platforms: &[&str]) -> Client {
        self.grant("platforms", platforms)
    }

    /// The WeCom suites whose corps it may read (`["*"]` for all).
    pub fn wecom_suites(self, suites: &[&str]) -> Client {
        self.grant("wecom_suites", suites)
    }

    /// The WeCom providers whose tokens it may read (`["*"]` for all).
    pub fn wecom_providers(self, providers: &[&str]) -> Client {
        self.grant("wecom_providers", providers)
    }

    /// May revoke tokens and reload the configuration.
    pub fn admin(mut self) -> Client {
        self.admin = true;
        self
    }

    /// May call WeChat through the gateway.
    pub fn proxy(mut self) -> Client {
        self.proxy = true;
        self
    }
}

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "[[clients]]\nname = \"{}\"\n{}",
            self.name, self.key_line
        )?;
        for (key, names) in &self.grants {
            writeln!(f, "{key} = {names:?}")?;
        }
        if self.admin {
            writeln!(f, "admin = true")?;
        }
        if self.proxy {
            writeln!(f, "proxy = true")?;
        }
        Ok(())
    }
}
