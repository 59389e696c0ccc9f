//! One error and its causes on one line.

/// Formats an error and its sources as "outer: inner: innermost", for log lines and for error
/// types whose own message carries their cause (the binary prints errors with plain `{}`).
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(inner) = next {
        let inner_text = inner.to_string();
        // Some libraries repeat their source's message in their own.
        if !text.ends_with(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        next = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::chain;

    #[derive(Debug, thiserror::Error)]
    #[error("{text}")]
    struct Layer {
        text: &'static str,
        #[source]
        cause: Option<Box<Layer>>,
    }

    fn layers(texts: &[&'static str]) -> Layer {
        let mut cause = None;
        for text in texts.iter().rev() {
            cause = Some(Box::new(Layer { text, cause }));
        }
        *cause.expect("at least one layer")
    }

    #[test]
    fn every_cause_once_outermost_first() {
        assert_eq!(chain(&layers(&["open"])), "open");
        assert_eq!(
            chain(&layers(&["cannot open", "device busy", "EBUSY"])),
            "cannot open: device busy: EBUSY"
        );
        // A message that already ends with its cause's is not repeated.
        assert_eq!(
            chain(&layers(&["write failed: disk full", "disk full"])),
            "write failed: disk full"
        );
    }
}
