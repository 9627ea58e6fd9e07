mod fake_wechat;
fn main() {}
