//! What each MPD command does, for one client: its permissions (MPD's `read` set without a
//! password; the host's powers after `password PIN`), its tag mask and binary limit. The party
//! is read from the [`Mirror`](super::mirror::Mirror); what changes it goes through the same
//! typed commands as the websocket and the HTTP API (`server::command`), as the host.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;

use serde_json::Value;

use super::ack::{Ack, Code};
use super::mirror::{Model, Subsystems};
use super::song::{self, TagMask};
use super::{library, Ctx};
use crate::hub::Actor;
use crate::party::{EntryId, GuestId, PlayId};
use crate::protocol::{Cmd, ErrorCode, HostCmd, WireError};
use crate::server::command::{self as front, Outcome};

/// Who may run a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Perm {
    /// Anyone, before and after the password.
    Always,
    /// MPD's `read`: what a guest's phone may see.
    Read,
    /// The host's, after `password PIN`.
    Host,
}

/// A command the jukebox speaks: its name, who may run it, and its argument count.
struct Def {
    name: &'static str,
    perm: Perm,
    min: usize,
    max: usize,
}

const fn def(name: &'static str, perm: Perm, min: usize, max: usize) -> Def {
    Def {
        name,
        perm,
        min,
        max,
    }
}

/// Every command, sorted by name (`commands` lists them in this order).
const COMMANDS: &[Def] = &[
    def("add", Perm::Host, 1, 2),
    def("addid", Perm::Host, 1, 2),
    def("albumart", Perm::Read, 2, 2),
    def("binarylimit", Perm::Always, 1, 1),
    def("channels", Perm::Read, 0, 0),
    def("clear", Perm::Host, 0, 0),
    def("close", Perm::Always, 0, 0),
    def("commands", Perm::Always, 0, 0),
    def("consume", Perm::Host, 1, 1),
    def("count", Perm::Read, 1, 64),
    def("crossfade", Perm::Host, 1, 1),
    def("currentsong", Perm::Read, 0, 0),
    def("decoders", Perm::Read, 0, 0),
    def("delete", Perm::Host, 1, 1),
    def("deleteid", Perm::Host, 1, 1),
    def("find", Perm::Read, 1, 64),
    def("findadd", Perm::Host, 1, 64),
    def("getvol", Perm::Read, 0, 0),
    def("idle", Perm::Read, 0, 14),
    def("list", Perm::Read, 1, 64),
    def("listall", Perm::Read, 0, 1),
    def("listallinfo", Perm::Read, 0, 1),
    def("listplaylist", Perm::Read, 1, 2),
    def("listplaylistinfo", Perm::Read, 1, 2),
    def("listplaylists", Perm::Read, 0, 0),
    def("lsinfo", Perm::Read, 0, 1),
    def("move", Perm::Host, 2, 2),
    def("moveid", Perm::Host, 2, 2),
    def("next", Perm::Host, 0, 0),
    def("notcommands", Perm::Always, 0, 0),
    def("outputs", Perm::Read, 0, 0),
    def("password", Perm::Always, 1, 1),
    def("pause", Perm::Host, 0, 1),
    def("ping", Perm::Always, 0, 0),
    def("play", Perm::Host, 0, 1),
    def("playid", Perm::Host, 0, 1),
    def("playlist", Perm::Read, 0, 0),
    def("playlistfind", Perm::Read, 1, 64),
    def("playlistid", Perm::Read, 0, 1),
    def("playlistinfo", Perm::Read, 0, 1),
    def("playlistsearch", Perm::Read, 1, 64),
    def("plchanges", Perm::Read, 1, 2),
    def("plchangesposid", Perm::Read, 1, 2),
    def("previous", Perm::Host, 0, 0),
    def("prio", Perm::Host, 2, 64),
    def("prioid", Perm::Host, 2, 64),
    def("random", Perm::Host, 1, 1),
    def("readmessages", Perm::Read, 0, 0),
    def("readpicture", Perm::Read, 2, 2),
    def("repeat", Perm::Host, 1, 1),
    def("replay_gain_status", Perm::Read, 0, 0),
    def("rescan", Perm::Host, 0, 1),
    def("search", Perm::Read, 1, 64),
    def("searchadd", Perm::Host, 1, 64),
    def("seek", Perm::Host, 2, 2),
    def("seekcur", Perm::Host, 1, 1),
    def("seekid", Perm::Host, 2, 2),
    def("setvol", Perm::Host, 1, 1),
    def("shuffle", Perm::Host, 0, 1),
    def("single", Perm::Host, 1, 1),
    def("stats", Perm::Read, 0, 0),
    def("status", Perm::Read, 0, 0),
    def("stop", Perm::Host, 0, 0),
    def("subscribe", Perm::Read, 1, 1),
    def("swap", Perm::Host, 2, 2),
    def("swapid", Perm::Host, 2, 2),
    def("tagtypes", Perm::Always, 0, 64),
    def("unsubscribe", Perm::Read, 1, 1),
    def("update", Perm::Host, 0, 1),
    def("urlhandlers", Perm::Read, 0, 0),
    def("volume", Perm::Host, 1, 1),
];

/// The command `name`, or the ACK for an unknown one.
fn known(name: &str) -> Result<&'static Def, Ack> {
    lookup(name).ok_or_else(|| Ack::new(Code::Unknown, "", format!("unknown command \"{name}\"")))
}

/// Whether `args` are as many as `d` takes.
fn arity(d: &Def, args: &[String]) -> Result<(), Ack> {
    if args.len() >= d.min && args.len() <= d.max {
        return Ok(());
    }
    let name = d.name;
    let m = if d.min == d.max {
        format!("wrong number of arguments for \"{name}\"")
    } else if args.len() < d.min {
        format!("too few arguments for \"{name}\"")
    } else {
        format!("too many arguments for \"{name}\"")
    };
    Err(Ack::arg(name, m))
}

/// Reads a request as far as it can be without the party: the command, its number of
/// arguments, and the filter expression of the commands that take one. `Err` is the ACK's
/// text.
pub(super) fn read(line: &str) -> Result<(&'static str, usize), String> {
    let req = super::tokenize::split(line).map_err(|e| e.message().to_string())?;
    let d = known(&req.command).map_err(|a| a.message)?;
    arity(d, &req.args).map_err(|a| a.message)?;
    let filter = match d.name {
        "find" | "findadd" | "count" => Some((&req.args[..], false)),
        "search" | "searchadd" | "playlistsearch" => Some((&req.args[..], true)),
        "playlistfind" => Some((&req.args[..], false)),
        "list" => Some((&req.args[1..], false)),
        _ => None,
    };
    if let Some((args, fold)) = filter.filter(|(a, _)| !a.is_empty()) {
        super::filter::parse(args, fold)?;
    }
    Ok((d.name, req.args.len()))
}

fn lookup(name: &str) -> Option<&'static Def> {
    COMMANDS
        .binary_search_by(|d| d.name.cmp(name))
        .ok()
        .map(|i| &COMMANDS[i])
}

/// The binary chunk size MPD starts with, and its smallest.
const BINARY_LIMIT: usize = 8192;
const BINARY_MIN: usize = 64;
/// The largest chunk a client may ask for.
const BINARY_MAX: usize = 1 << 20;

/// One client's state.
pub struct Client {
    ctx: Arc<Ctx>,
    peer: IpAddr,
    /// The host login this connection made with `password`.
    host: Option<GuestId>,
    tags: TagMask,
    binary_limit: usize,
    /// Subsystems changed since the client last idled.
    pending: Subsystems,
}

impl Client {
    pub fn new(ctx: Arc<Ctx>, peer: IpAddr) -> Client {
        Client {
            ctx,
            peer,
            host: None,
            tags: TagMask::ALL,
            binary_limit: BINARY_LIMIT,
            pending: Subsystems::default(),
        }
    }

    /// Notes subsystems that changed.
    pub fn note(&mut self, s: Subsystems) {
        self.pending |= s;
    }

    /// Takes the changed subsystems among `mask` (the others stay pending, as in MPD 0.24).
    pub fn take(&mut self, mask: Subsystems) -> Subsystems {
        let got = self.pending & mask;
        self.pending = Subsystems(self.pending.0 & !mask.0);
        got
    }

    /// The host's actor while its login is valid (a logout elsewhere ends it here too).
    fn actor(&self) -> Option<Actor> {
        let g = self.host?;
        self.ctx.state.login.sessions.check(g).then_some(Actor {
            guest: g,
            host: true,
        })
    }

    fn allowed(&self, perm: Perm) -> bool {
        match perm {
            Perm::Always | Perm::Read => true,
            Perm::Host => self.actor().is_some(),
        }
    }

    /// Runs one command, writing its output (not the final `OK`) to `out`.
    pub async fn exec(
        &mut self,
        name: &str,
        args: &[String],
        out: &mut Vec<u8>,
    ) -> Result<(), Ack> {
        let d = known(name)?;
        if !self.allowed(d.perm) {
            return Err(Ack::permission(name));
        }
        arity(d, args)?;
        let (mut text, mut bin) = (String::new(), Vec::new());
        let r = self.run(d, args, &mut text, &mut bin).await;
        out.extend_from_slice(text.as_bytes());
        out.extend_from_slice(&bin);
        r
    }

    async fn run(
        &mut self,
        d: &Def,
        args: &[String],
        out: &mut String,
        bin: &mut Vec<u8>,
    ) -> Result<(), Ack> {
        let name = d.name;
        let m = self.ctx.mirror.model();
        match name {
            "ping" | "channels" | "readmessages" | "listplaylists" | "urlhandlers" => Ok(()),
            // No messages are ever sent on a channel: subscribing is harmless.
            "subscribe" | "unsubscribe" => Ok(()),
            "listplaylist" | "listplaylistinfo" => {
                Err(Ack::new(Code::NoExist, name, "No such playlist"))
            }
            "playlistfind" | "playlistsearch" => {
                let fold = name == "playlistsearch";
                let (f, rest) = super::filter::parse(args, fold).map_err(|e| Ack::arg(name, e))?;
                if !rest.is_empty() {
                    return Err(Ack::arg(name, "too many arguments"));
                }
                for pos in 0..m.queue.len() {
                    if f.matches(&m.queue[pos].song, fold) {
                        self.song(&m, pos, out);
                    }
                }
                Ok(())
            }
            "password" => self.password(&args[0]).await,
            "commands" | "notcommands" => {
                let want = name == "commands";
                for d in COMMANDS {
                    if self.allowed(d.perm) == want {
                        let _ = writeln!(out, "command: {}", d.name);
                    }
                }
                Ok(())
            }
            "tagtypes" => self.tagtypes(args, out),
            "binarylimit" => {
                let n: usize = number(name, &args[0])?;
                if n < BINARY_MIN {
                    return Err(Ack::arg(name, "Value too small"));
                }
                self.binary_limit = n.min(BINARY_MAX);
                Ok(())
            }
            "status" => {
                status(&m, out);
                Ok(())
            }
            "stats" => library::stats(&self.ctx, &m, out).await,
            "currentsong" => {
                if m.has_current() {
                    self.song(&m, 0, out);
                }
                Ok(())
            }
            "playlistinfo" => {
                let (from, to) = match args.first() {
                    None => (0, m.queue.len()),
                    Some(a) => range(name, a, m.queue.len())?,
                };
                for pos in from..to {
                    self.song(&m, pos, out);
                }
                Ok(())
            }
            "playlistid" => match args.first() {
                None => {
                    for pos in 0..m.queue.len() {
                        self.song(&m, pos, out);
                    }
                    Ok(())
                }
                Some(a) => {
                    let id: u32 = number(name, a)?;
                    let pos = position_of(&m, id).ok_or_else(|| Ack::no_such_song(name))?;
                    self.song(&m, pos, out);
                    Ok(())
                }
            },
            "plchanges" | "plchangesposid" => {
                let since: u32 = number(name, &args[0])?;
                let (from, to) = match args.get(1) {
                    None => (0, m.queue.len()),
                    Some(a) => range(name, a, m.queue.len())?,
                };
                for pos in from..to {
                    // MPD's rule: everything when the client's version is from the future.
                    if since > m.version || m.changed_at[pos] > since {
                        if name == "plchanges" {
                            self.song(&m, pos, out);
                        } else {
                            let _ = writeln!(out, "cpos: {pos}\nId: {}", m.queue[pos].id);
                        }
                    }
                }
                Ok(())
            }
            "playlist" => {
                for (pos, q) in m.queue.iter().enumerate() {
                    let _ = writeln!(out, "{pos}:file: {}", q.song.file);
                }
                Ok(())
            }
            "getvol" => {
                let _ = writeln!(out, "volume: {}", m.volume());
                Ok(())
            }
            "outputs" => {
                let desc = self.ctx.output.clone();
                let _ = writeln!(
                    out,
                    "outputid: 0\noutputname: {desc}\nplugin: jukebox\noutputenabled: 1"
                );
                Ok(())
            }
            "decoders" => {
                decoders(out);
                Ok(())
            }
            "replay_gain_status" => {
                out.push_str("replay_gain_mode: off\n");
                Ok(())
            }
            "random" | "repeat" | "single" | "consume" => {
                let want = args[0].as_str();
                let is = if name == "consume" { "1" } else { "0" };
                if want == is {
                    return Ok(());
                }
                if !["0", "1", "oneshot"].contains(&want) {
                    return Err(Ack::arg(name, format!("Boolean (0/1) expected: {want}")));
                }
                Err(Ack::arg(
                    name,
                    format!(
                        "the jukebox plays requests in the order the guests' votes give them, \
                         as MPD's consume mode with {name} {is}"
                    ),
                ))
            }
            // The guests' votes order the queue (and are its `Prio`): a host orders it by
            // moving songs, which pins them.
            "prio" | "prioid" | "shuffle" => Err(Ack::arg(
                name,
                "the jukebox plays requests in the order the guests' votes give them; \
                 move a song to pin it",
            )),
            "swap" | "swapid" => {
                let id = |a: &String| -> Result<u32, Ack> {
                    if name == "swap" {
                        let pos: usize = number(name, a)?;
                        m.queue
                            .get(pos)
                            .map(|q| q.id)
                            .ok_or_else(|| Ack::arg(name, "Bad song index"))
                    } else {
                        number(name, a)
                    }
                };
                let (a, b) = (id(&args[0])?, id(&args[1])?);
                let pos = |id: u32| m.queue.iter().position(|q| q.id == id);
                let (Some(pa), Some(pb)) = (pos(a), pos(b)) else {
                    return Err(Ack::no_such_song(name));
                };
                if pa == pb {
                    return Ok(());
                }
                // The later one up to the earlier's place, then the earlier one down to the
                // later's: each a move, as the host's moves are.
                let (first, second) = if pa < pb { (a, b) } else { (b, a) };
                let (pf, ps) = (pa.min(pb) as i64, pa.max(pb) as i64);
                self.move_to(name, &m, second, pf).await?;
                let m = self.ctx.mirror.model();
                self.move_to(name, &m, first, ps).await
            }
            "crossfade" => {
                let s: u32 = number(name, &args[0])?;
                self.host_cmd(
                    name,
                    HostCmd::Settings(crate::hub::SettingsPatch {
                        crossfade_s: Some(s),
                        ..Default::default()
                    }),
                )
                .await
            }
            "play" | "playid" => self.play(name, args, &m).await,
            "pause" => {
                let paused = m.playing.as_ref().is_some_and(|p| p.paused);
                let pause = match args.first().map(String::as_str) {
                    None => !paused,
                    Some("1") => true,
                    Some("0") => false,
                    Some(a) => return Err(Ack::arg(name, format!("Boolean (0/1) expected: {a}"))),
                };
                if m.playing.is_none() {
                    return Ok(());
                }
                self.host_cmd(name, if pause { HostCmd::Pause } else { HostCmd::Play })
                    .await
            }
            // The party does not stop: `stop` pauses what plays.
            "stop" => {
                if m.playing.is_none() {
                    return Ok(());
                }
                self.host_cmd(name, HostCmd::Pause).await
            }
            "next" => {
                let play_id = current_play(&m).ok_or_else(|| not_playing(name))?;
                self.host_cmd(
                    name,
                    HostCmd::Skip {
                        play_id: Some(play_id),
                    },
                )
                .await?;
                self.ctx.mirror.left(play_id).await;
                Ok(())
            }
            // No history in a consume-mode queue: back to the start of what plays, as MPD at
            // position 0.
            "previous" => {
                if m.playing.is_none() {
                    return Err(not_playing(name));
                }
                self.host_cmd(name, HostCmd::Seek { position_ms: 0 }).await
            }
            "setvol" => {
                let v: u32 = number(name, &args[0])?;
                if v > 100 {
                    return Err(Ack::arg(name, format!("Number too large: {v}")));
                }
                self.host_cmd(name, HostCmd::SetVolume { volume: v }).await
            }
            "volume" => {
                let d: i64 = number(name, &args[0])?;
                let max = m.room.as_ref().map_or(100, |r| r.settings.max_volume);
                let v = (i64::from(m.volume()) + d).clamp(0, i64::from(max)) as u32;
                self.host_cmd(name, HostCmd::SetVolume { volume: v }).await
            }
            "seek" | "seekid" => {
                let which: u32 = number(name, &args[0])?;
                let current = if name == "seek" {
                    which == 0
                } else {
                    m.queue.first().is_some_and(|q| q.id == which)
                };
                if !m.has_current() || !current {
                    return Err(Ack::arg(
                        name,
                        "only what plays can be sought; play it first",
                    ));
                }
                let position_ms = seconds(name, &args[1])?;
                self.host_cmd(name, HostCmd::Seek { position_ms }).await
            }
            "seekcur" => {
                let Some(p) = &m.playing else {
                    return Err(not_playing(name));
                };
                let a = args[0].as_str();
                let duration = m.queue.first().map_or(0, |q| q.song.duration_ms);
                let now = p.elapsed_ms(duration) as i64;
                let position_ms = match a.as_bytes().first() {
                    Some(b'+') => now + seconds(name, &a[1..])? as i64,
                    Some(b'-') => now - seconds(name, &a[1..])? as i64,
                    _ => seconds(name, a)? as i64,
                };
                self.host_cmd(
                    name,
                    HostCmd::Seek {
                        position_ms: position_ms.max(0) as u64,
                    },
                )
                .await
            }
            "add" | "addid" => self.add(name, args, &m, out).await,
            "findadd" | "searchadd" => {
                let tracks = library::matching(&self.ctx, name, args).await?;
                for t in tracks {
                    self.request(name, t.track).await?;
                }
                Ok(())
            }
            "delete" => {
                let (from, to) = range(name, &args[0], m.queue.len())?;
                for q in m.queue[from..to].iter().rev() {
                    self.delete(name, &m, q.id).await?;
                }
                Ok(())
            }
            "deleteid" => {
                let id: u32 = number(name, &args[0])?;
                position_of(&m, id).ok_or_else(|| Ack::no_such_song(name))?;
                self.delete(name, &m, id).await
            }
            "move" | "moveid" => {
                let id = if name == "move" {
                    let from: usize = number(name, &args[0])?;
                    m.queue
                        .get(from)
                        .map(|q| q.id)
                        .ok_or_else(|| Ack::arg(name, "Bad song index"))?
                } else {
                    number(name, &args[0])?
                };
                let to: i64 = number(name, &args[1])?;
                self.move_to(name, &m, id, to).await
            }
            "clear" => {
                for q in m.queue.iter().skip(usize::from(m.has_current())) {
                    if let Some(e) = q.entry {
                        self.host_cmd(name, HostCmd::Remove { entry_id: e }).await?;
                    }
                }
                Ok(())
            }
            "update" | "rescan" => {
                self.host_cmd(name, HostCmd::Rescan).await?;
                out.push_str("updating_db: 1\n");
                Ok(())
            }
            "lsinfo" | "listall" | "listallinfo" => {
                library::browse(
                    &self.ctx,
                    name,
                    args.first().map(String::as_str),
                    self.tags,
                    out,
                )
                .await
            }
            "list" => library::list(&self.ctx, args, out).await,
            "find" | "search" => {
                let tracks = library::matching(&self.ctx, name, args).await?;
                for t in &tracks {
                    song::write(out, t, self.tags);
                }
                Ok(())
            }
            "count" => library::count(&self.ctx, args, out).await,
            "albumart" | "readpicture" => {
                let offset: usize = number(name, &args[1])?;
                library::picture(&self.ctx, name, &args[0], offset, self.binary_limit, bin).await
            }
            _ => Err(Ack::new(
                Code::Unknown,
                "",
                format!("unknown command \"{name}\""),
            )),
        }
    }

    fn song(&self, m: &Model, pos: usize, out: &mut String) {
        let q = &m.queue[pos];
        song::write(out, &q.song, self.tags);
        if q.votes > 0 {
            let _ = writeln!(out, "Prio: {}", q.votes.min(255));
        }
        let _ = writeln!(out, "Pos: {pos}\nId: {}", q.id);
    }

    fn tagtypes(&mut self, args: &[String], out: &mut String) -> Result<(), Ack> {
        let name = "tagtypes";
        match args.first().map(String::as_str) {
            None => {
                for t in self.tags.names() {
                    let _ = writeln!(out, "tagtype: {t}");
                }
                Ok(())
            }
            Some("clear") => {
                self.tags = TagMask::NONE;
                Ok(())
            }
            Some("all") => {
                self.tags = TagMask::ALL;
                Ok(())
            }
            Some(op @ ("enable" | "disable")) => {
                if args.len() < 2 {
                    return Err(Ack::arg(name, "Not enough arguments"));
                }
                for t in &args[1..] {
                    match TagMask::bit(t) {
                        Some(Some(i)) => self.tags.set(i, op == "enable"),
                        Some(None) => {}
                        None => return Err(Ack::arg(name, format!("Unknown tag type: {t}"))),
                    }
                }
                Ok(())
            }
            Some(other) => Err(Ack::arg(name, format!("Unknown sub command: {other}"))),
        }
    }

    async fn password(&mut self, pin: &str) -> Result<(), Ack> {
        let name = "password";
        if pin.len() > crate::login::MAX_ATTEMPT_LEN {
            return Err(Ack::new(Code::Password, name, "incorrect password"));
        }
        match crate::server::host_login(&self.ctx.state, self.peer, pin).await {
            Ok(g) => {
                self.host = Some(g.guest_id);
                Ok(())
            }
            Err(crate::server::LoginFailed::Wrong) => {
                Err(Ack::new(Code::Password, name, "incorrect password"))
            }
            Err(crate::server::LoginFailed::Refused { retry_after_ms }) => Err(Ack::new(
                Code::Password,
                name,
                format!(
                    "too many wrong passwords; try again in {} s",
                    retry_after_ms.div_ceil(1000)
                ),
            )),
            Err(crate::server::LoginFailed::Internal) => Err(Ack::new(
                Code::System,
                name,
                "the login could not be stored",
            )),
        }
    }

    /// Runs a host command as this client's host login.
    async fn host_cmd(&self, name: &str, cmd: HostCmd) -> Result<(), Ack> {
        let host = self
            .actor()
            .and_then(|a| a.as_host())
            .ok_or_else(|| Ack::permission(name))?;
        let o = front::host(&self.ctx.state, host, cmd).await;
        // What the client asks next (mpc asks `status` at once) shows the change.
        self.ctx.mirror.caught_up(o.after_seq).await;
        outcome(name, o).map(|_| ())
    }

    /// A host request of `track`; its entry.
    async fn request(
        &self,
        name: &str,
        track: crate::party::TrackId,
    ) -> Result<Option<EntryId>, Ack> {
        let actor = self.actor().ok_or_else(|| Ack::permission(name))?;
        let cmd = Cmd::Request {
            track_id: track,
            dedication: None,
        };
        let o = front::guest(&self.ctx.state, actor, cmd)
            .await
            .ok_or_else(|| Ack::new(Code::System, name, "the request was not taken"))?;
        self.ctx.mirror.caught_up(o.after_seq).await;
        let data = outcome(name, o)?;
        Ok(data["entry_id"].as_str().and_then(EntryId::parse))
    }

    async fn play(&self, name: &str, args: &[String], m: &Model) -> Result<(), Ack> {
        let Some(a) = args.first() else {
            return self.host_cmd(name, HostCmd::Play).await;
        };
        let n: i64 = number(name, a)?;
        // -1: the current song, as MPD reads it.
        let id = if name == "play" {
            if n < 0 {
                return self.host_cmd(name, HostCmd::Play).await;
            }
            m.queue
                .get(n as usize)
                .map(|q| q.id)
                .ok_or_else(|| Ack::arg(name, "Bad song index"))?
        } else {
            if n < 0 {
                return self.host_cmd(name, HostCmd::Play).await;
            }
            position_of(m, n as u32).ok_or_else(|| Ack::no_such_song(name))?;
            n as u32
        };
        if m.has_current() && m.queue[0].id == id {
            return self.host_cmd(name, HostCmd::Play).await;
        }
        // Another song: it goes first in the queue, and what plays is skipped for it.
        let entry = m
            .queue
            .iter()
            .find(|q| q.id == id)
            .and_then(|q| q.entry)
            .ok_or_else(|| Ack::no_such_song(name))?;
        self.host_cmd(
            name,
            HostCmd::Move {
                entry_id: entry,
                to: 0,
            },
        )
        .await?;
        match current_play(m) {
            Some(play_id) => {
                self.host_cmd(
                    name,
                    HostCmd::Skip {
                        play_id: Some(play_id),
                    },
                )
                .await
            }
            None => self.host_cmd(name, HostCmd::Play).await,
        }
    }

    async fn add(
        &self,
        name: &str,
        args: &[String],
        m: &Model,
        out: &mut String,
    ) -> Result<(), Ack> {
        let tracks = library::under(&self.ctx, name, &args[0]).await?;
        if name == "addid" && tracks.len() != 1 {
            return Err(Ack::no_such_song(name));
        }
        let mut last = None;
        for t in &tracks {
            last = self.request(name, t.track).await?;
        }
        let Some(entry) = last.filter(|_| name == "addid") else {
            return Ok(());
        };
        if let Some(pos) = args.get(1) {
            let to = relative_position(name, pos, m)?;
            self.move_to(name, m, entry.get() as u32, to).await?;
        }
        let _ = writeln!(out, "Id: {}", entry.get());
        Ok(())
    }

    /// Removes the song with MPD id `id`: the one that plays is skipped.
    async fn delete(&self, name: &str, m: &Model, id: u32) -> Result<(), Ack> {
        let q = m
            .queue
            .iter()
            .position(|q| q.id == id)
            .ok_or_else(|| Ack::no_such_song(name))?;
        if q == 0 && m.has_current() {
            let play_id = current_play(m).ok_or_else(|| not_playing(name))?;
            return self
                .host_cmd(
                    name,
                    HostCmd::Skip {
                        play_id: Some(play_id),
                    },
                )
                .await;
        }
        let entry = m.queue[q].entry.ok_or_else(|| Ack::no_such_song(name))?;
        self.host_cmd(name, HostCmd::Remove { entry_id: entry })
            .await
    }

    /// Moves the song with MPD id `id` to position `to`: a host pin there. Position 0 is what
    /// plays, so the earliest place is 1.
    async fn move_to(&self, name: &str, m: &Model, id: u32, to: i64) -> Result<(), Ack> {
        let q = m
            .queue
            .iter()
            .find(|q| q.id == id)
            .ok_or_else(|| Ack::no_such_song(name))?;
        if m.has_current() && m.queue[0].id == id {
            return Err(Ack::arg(name, "what plays stays at position 0"));
        }
        let entry = q.entry.ok_or_else(|| Ack::no_such_song(name))?;
        let head = i64::from(m.has_current());
        let to = (to - head).max(0) as usize;
        self.host_cmd(
            name,
            HostCmd::Move {
                entry_id: entry,
                to,
            },
        )
        .await
    }
}

/// The formats the player decodes, as MPD lists its decoder plugins: their suffixes, then
/// their MIME types.
const DECODERS: [(&str, &[&str], &[&str]); 6] = [
    ("flac", &["flac"], &["audio/flac", "audio/x-flac"]),
    ("vorbis", &["ogg", "oga"], &["audio/ogg", "audio/vorbis"]),
    ("opus", &["opus"], &["audio/ogg", "audio/opus"]),
    ("mad", &["mp3"], &["audio/mpeg"]),
    (
        "pcm",
        &["wav", "aif", "aiff", "aifc"],
        &["audio/wav", "audio/aiff"],
    ),
    ("mp4", &["m4a", "mp4", "aac"], &["audio/mp4", "audio/aac"]),
];

fn decoders(out: &mut String) {
    for (plugin, suffixes, mimes) in DECODERS {
        let _ = writeln!(out, "plugin: {plugin}");
        for s in suffixes {
            let _ = writeln!(out, "suffix: {s}");
        }
        for m in mimes {
            let _ = writeln!(out, "mime_type: {m}");
        }
    }
}

/// `status`, in MPD's order and formats.
fn status(m: &Model, out: &mut String) {
    let state = match &m.playing {
        None => "stop",
        Some(p) if p.paused => "pause",
        Some(_) => "play",
    };
    let _ = write!(
        out,
        "volume: {}\nrepeat: 0\nrandom: 0\nsingle: 0\nconsume: 1\npartition: default\n\
         playlist: {}\nplaylistlength: {}\nmixrampdb: 0\nstate: {state}\n",
        m.volume(),
        m.version,
        m.queue.len(),
    );
    let current = m.has_current();
    if current {
        let q = &m.queue[0];
        let _ = writeln!(out, "song: 0\nsongid: {}", q.id);
        if let Some(p) = &m.playing {
            let d = q.song.duration_ms;
            let e = p.elapsed_ms(d);
            let _ = write!(
                out,
                "time: {}:{}\nelapsed: {}\nbitrate: {}\nduration: {}\n",
                e / 1000,
                (d + 500) / 1000,
                song::secs(e),
                q.song.details.bitrate_kbps.unwrap_or(0),
                song::secs(d)
            );
            if let Some(f) = q.song.details.format {
                let _ = writeln!(out, "audio: {f}");
            }
        }
    }
    if let Some(x) = m
        .room
        .as_ref()
        .map(|r| r.settings.crossfade_s)
        .filter(|x| *x > 0)
    {
        let _ = writeln!(out, "xfade: {x}");
    }
    if m.room
        .as_ref()
        .and_then(|r| r.scan)
        .is_some_and(|s| !s.done)
    {
        out.push_str("updating_db: 1\n");
    }
    let next = usize::from(current);
    if let Some(q) = m.queue.get(next) {
        let _ = writeln!(out, "nextsong: {next}\nnextsongid: {}", q.id);
    }
}

/// The play going on, as the hub names it.
fn current_play(m: &Model) -> Option<PlayId> {
    m.playing.as_ref()?;
    m.current_play
}

fn not_playing(name: &str) -> Ack {
    Ack::new(Code::PlayerSync, name, "Not playing")
}

fn position_of(m: &Model, id: u32) -> Option<usize> {
    m.queue.iter().position(|q| q.id == id)
}

/// A number argument, with MPD's message when it is not one.
fn number<T: std::str::FromStr>(name: &str, a: &str) -> Result<T, Ack> {
    a.parse()
        .map_err(|_| Ack::arg(name, format!("Integer expected: {a}")))
}

/// Seconds (with a fraction) as ms.
fn seconds(name: &str, a: &str) -> Result<u64, Ack> {
    a.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| (s * 1000.0) as u64)
        .ok_or_else(|| Ack::arg(name, format!("Number expected: {a}")))
}

/// `POS` or `START:END` (END may be left out) within a queue of `len`.
fn range(name: &str, a: &str, len: usize) -> Result<(usize, usize), Ack> {
    let bad = || Ack::arg(name, "Bad song index");
    match a.split_once(':') {
        None => {
            let p: usize = a.parse().map_err(|_| bad())?;
            if p >= len {
                return Err(bad());
            }
            Ok((p, p + 1))
        }
        Some((s, e)) => {
            let s: usize = s.parse().map_err(|_| bad())?;
            let e: usize = if e.is_empty() {
                len
            } else {
                e.parse().map_err(|_| bad())?
            };
            if s > e || s > len {
                return Err(bad());
            }
            Ok((s, e.min(len)))
        }
    }
}

/// `addid`'s position: absolute, or `+N`/`-N` relative to what plays (MPD 0.23).
fn relative_position(name: &str, a: &str, m: &Model) -> Result<i64, Ack> {
    let base = i64::from(m.has_current()) - 1;
    match a.as_bytes().first() {
        Some(b'+') => Ok(base + 1 + number::<i64>(name, &a[1..])?),
        Some(b'-') => Ok(base - number::<i64>(name, &a[1..])?),
        _ => number(name, a),
    }
}

/// A front end's outcome as MPD says it: the reply's data, or the ACK for its error.
fn outcome(name: &str, o: Outcome) -> Result<Value, Ack> {
    o.result.map_err(|e| wire_ack(name, &e))
}

fn wire_ack(name: &str, e: &WireError) -> Ack {
    let code = match e.code {
        ErrorCode::NotFound => Code::NoExist,
        ErrorCode::Forbidden | ErrorCode::Unauthorized => Code::Permission,
        ErrorCode::StalePlay => Code::PlayerSync,
        ErrorCode::Internal | ErrorCode::RateLimited => Code::System,
        _ => Code::Arg,
    };
    Ack::new(code, name, e.message.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_table_is_sorted_and_lists_only_what_runs() {
        assert!(COMMANDS.windows(2).all(|w| w[0].name < w[1].name));
        for d in COMMANDS {
            assert!(d.min <= d.max, "{}", d.name);
        }
        assert!(lookup("status").is_some() && lookup("frobnicate").is_none());
    }

    #[test]
    fn decoders_name_every_format_the_library_takes() {
        let mut listed: Vec<&str> = DECODERS.iter().flat_map(|d| d.1.iter().copied()).collect();
        let mut taken = crate::library::AUDIO_EXTENSIONS.to_vec();
        listed.sort_unstable();
        taken.sort_unstable();
        assert_eq!(listed, taken);
    }

    #[test]
    fn ranges_read_as_mpd_reads_them() {
        assert_eq!(range("x", "2", 5), Ok((2, 3)));
        assert_eq!(range("x", "1:3", 5), Ok((1, 3)));
        assert_eq!(range("x", "1:", 5), Ok((1, 5)));
        assert!(range("x", "5", 5).is_err());
        assert!(range("x", "3:1", 5).is_err());
        assert!(range("x", "a", 5).is_err());
    }
}
