//! MPD's errors: `ACK [code@index] {command} message`, with MPD's codes (src/protocol/Ack.hxx)
//! so that clients react as they do to MPD (ncmpcpp asks for the password on 4, MPDroid
//! retries anything but 3 and 4).

use std::fmt::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Arg = 2,
    Password = 3,
    Permission = 4,
    Unknown = 5,
    NoExist = 50,
    System = 52,
    PlayerSync = 55,
}

/// One failed command; `index` is its place in a command list (0 outside one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub code: Code,
    pub command: String,
    pub message: String,
}

impl Ack {
    pub fn new(code: Code, command: &str, message: impl Into<String>) -> Ack {
        Ack {
            code,
            command: command.to_string(),
            message: message.into(),
        }
    }

    /// A bad argument (ACK 2).
    pub fn arg(command: &str, message: impl Into<String>) -> Ack {
        Ack::new(Code::Arg, command, message)
    }

    /// MPD's refusal of a command this client may not run (ACK 4).
    pub fn permission(command: &str) -> Ack {
        Ack::new(
            Code::Permission,
            command,
            format!("you don't have permission for \"{command}\""),
        )
    }

    pub fn no_such_song(command: &str) -> Ack {
        Ack::new(Code::NoExist, command, "No such song")
    }

    /// The line, newline included.
    pub fn write(&self, index: usize, out: &mut String) {
        // Messages are one line: a newline from a reason we pass on would end the ACK early.
        let message = self.message.replace(['\n', '\r'], " ");
        let _ = writeln!(
            out,
            "ACK [{}@{index}] {{{}}} {message}",
            self.code as u16, self.command
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_are_spelled_as_mpd_spells_them() {
        let mut out = String::new();
        Ack::permission("next").write(0, &mut out);
        Ack::arg("play", "Bad song index").write(1, &mut out);
        Ack::new(Code::Unknown, "", "unknown command \"x\"").write(0, &mut out);
        assert_eq!(
            out,
            "ACK [4@0] {next} you don't have permission for \"next\"\n\
             ACK [2@1] {play} Bad song index\n\
             ACK [5@0] {} unknown command \"x\"\n"
        );
    }
}
