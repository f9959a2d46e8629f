//! `wala-crypto`: the short-lived helper that links OpenSSL, so that `wala-agentd` does not. It
//! answers one call from stdin on stdout (certificate work, one HTTPS exchange) and exits; see
//! `wala::crypto::helper`.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(u8::try_from(wala::crypto::helper::serve()).unwrap_or(1))
}
