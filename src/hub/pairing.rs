//! Pairing a TV as a screen: the TV asks for a short code to show and a secret claim to poll
//! with; the host types the code; the TV's next poll takes the screen's token, once.

use std::collections::VecDeque;

use rand::Rng;

use super::GuestCreated;

/// How long a pairing code shown on a TV stays good.
pub const PAIRING_MS: i64 = 10 * 60 * 1000;
/// Pairings waiting at once; the oldest goes first.
const PAIRINGS_MAX: usize = 64;

/// A TV waiting for the host to type its code.
struct Pairing {
    code: String,
    /// The secret the TV polls with (the code alone is on the screen for everyone to see).
    claim: String,
    created_ms: i64,
    /// Set once the host paired it; handed to the claim once, then the pairing is gone.
    paired: Option<GuestCreated>,
}

/// What a TV's poll gets.
#[derive(Debug, PartialEq)]
pub(crate) enum Claimed {
    Unknown,
    Pending,
    Paired(GuestCreated),
}

#[derive(Default)]
pub(crate) struct Pairings {
    waiting: VecDeque<Pairing>,
}

impl Pairings {
    /// A new pairing at `now`: its code (unique among those waiting) and claim.
    pub(crate) fn start(&mut self, now: i64) -> (String, String) {
        self.expire(now);
        while self.waiting.len() >= PAIRINGS_MAX {
            self.waiting.pop_front();
        }
        let mut rng = rand::rng();
        let code = loop {
            let c = format!("{:06}", rng.random_range(0..1_000_000u32));
            if !self.waiting.iter().any(|p| p.code == c) {
                break c;
            }
        };
        let claim = format!("{:032x}", rng.random::<u128>());
        self.waiting.push_back(Pairing {
            code: code.clone(),
            claim: claim.clone(),
            created_ms: now,
            paired: None,
        });
        (code, claim)
    }

    /// Whether `code` (spaces and dashes ignored) is waiting to be paired at `now`.
    pub(crate) fn waiting(&mut self, code: &str, now: i64) -> bool {
        self.expire(now);
        let code = normalise(code);
        self.waiting
            .iter()
            .any(|p| p.paired.is_none() && p.code == code)
    }

    /// The host paired `code` (checked with [`Pairings::waiting`]) as this screen.
    pub(crate) fn paired(&mut self, code: &str, screen: GuestCreated) {
        let code = normalise(code);
        if let Some(p) = self
            .waiting
            .iter_mut()
            .find(|p| p.paired.is_none() && p.code == code)
        {
            p.paired = Some(screen);
        }
    }

    /// The TV polls with its claim at `now`.
    pub(crate) fn claim(&mut self, claim: &str, now: i64) -> Claimed {
        let Some(i) = self.waiting.iter().position(|p| {
            bool::from(subtle::ConstantTimeEq::ct_eq(
                p.claim.as_bytes(),
                claim.as_bytes(),
            ))
        }) else {
            return Claimed::Unknown;
        };
        if self.waiting[i].paired.is_some() {
            return match self.waiting.remove(i).and_then(|p| p.paired) {
                Some(g) => Claimed::Paired(g),
                None => Claimed::Unknown,
            };
        }
        if now - self.waiting[i].created_ms >= PAIRING_MS {
            self.waiting.remove(i);
            return Claimed::Unknown;
        }
        Claimed::Pending
    }

    fn expire(&mut self, now: i64) {
        self.waiting.retain(|p| now - p.created_ms < PAIRING_MS);
    }
}

fn normalise(code: &str) -> String {
    code.chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn screen() -> GuestCreated {
        GuestCreated {
            guest_id: crate::party::GuestId::new(5),
            token: "t".into(),
            name: "Screen 1".into(),
        }
    }

    #[test]
    fn a_code_pairs_once_and_the_claim_takes_the_token_once() {
        let mut p = Pairings::default();
        let (code, claim) = p.start(0);
        assert_eq!(p.claim(&claim, 1), Claimed::Pending);
        let typed = format!("{}-{} ", &code[..3], &code[3..]);
        assert!(p.waiting(&typed, 2));
        p.paired(&typed, screen());
        assert!(!p.waiting(&code, 3), "paired already");
        assert_eq!(p.claim(&claim, 4), Claimed::Paired(screen()));
        assert_eq!(p.claim(&claim, 5), Claimed::Unknown);
    }

    #[test]
    fn codes_expire() {
        let mut p = Pairings::default();
        let (code, claim) = p.start(0);
        assert!(!p.waiting(&code, PAIRING_MS));
        assert_eq!(p.claim(&claim, PAIRING_MS), Claimed::Unknown);
        let (_, claim) = p.start(0);
        assert_eq!(p.claim(&claim, PAIRING_MS - 1), Claimed::Pending);
        assert_eq!(p.claim(&claim, PAIRING_MS), Claimed::Unknown);
    }
}
