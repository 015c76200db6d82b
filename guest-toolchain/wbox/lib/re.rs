//! POSIX regular expressions (basic and extended, with the GNU escapes
//! `\+ \? \| \w \W \s \S \b \B \< \>`) for grep and sed: compiled to a small
//! program run by a backtracking machine that remembers failed states, so
//! it stays linear per start position (without back-references).

#[derive(Debug, Clone)]
enum Inst {
    Char(char),
    Any,
    Set(Box<Set>),
    Split(usize, usize),
    Jmp(usize),
    Save(usize),
    Bol,
    Eol,
    WordB(bool),
    WordStart,
    WordEnd,
    Backref(usize),
    Match,
}

#[derive(Debug, Clone, Default)]
struct Set {
    neg: bool,
    chars: Vec<char>,
    ranges: Vec<(char, char)>,
    classes: Vec<String>,
}

impl Set {
    fn matches(&self, c: char, icase: bool) -> bool {
        let test = |c: char| {
            self.chars.contains(&c)
                || self.ranges.iter().any(|(a, b)| *a <= c && c <= *b)
                || self
                    .classes
                    .iter()
                    .any(|k| crate::lib::glob::class_match(k, c))
        };
        let m =
            test(c) || (icase && (test(c.to_ascii_lowercase()) || test(c.to_ascii_uppercase())));
        m != self.neg
    }
}

#[derive(Debug, Clone)]
enum Node {
    Char(char),
    Any,
    Set(Set),
    Bol,
    Eol,
    WordB(bool),
    WordStart,
    WordEnd,
    Backref(usize),
    Group(Box<Node>, usize),
    Cat(Vec<Node>),
    Alt(Vec<Node>),
    Rep(Box<Node>, u32, Option<u32>),
}

#[derive(Debug, Clone)]
pub struct Regex {
    prog: Vec<Inst>,
    pub groups: usize,
    icase: bool,
    backrefs: bool,
    /// A literal first character, to skip start positions quickly.
    first: Option<char>,
    anchored: bool,
}

struct Parser<'a> {
    s: &'a [char],
    i: usize,
    ere: bool,
    groups: usize,
    backrefs: bool,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<char> {
        self.s.get(self.i).copied()
    }
    fn peek2(&self) -> Option<char> {
        self.s.get(self.i + 1).copied()
    }

    fn alt(&mut self, depth: usize) -> Result<Node, String> {
        let mut alts = vec![self.cat(depth)?];
        loop {
            if self.ere && self.peek() == Some('|') {
                self.i += 1;
            } else if !self.ere && self.peek() == Some('\\') && self.peek2() == Some('|') {
                self.i += 2;
            } else {
                break;
            }
            alts.push(self.cat(depth)?);
        }
        Ok(if alts.len() == 1 {
            alts.pop().unwrap_or(Node::Cat(Vec::new()))
        } else {
            Node::Alt(alts)
        })
    }

    fn at_group_end(&self, depth: usize) -> bool {
        match self.peek() {
            None => true,
            Some('|') if self.ere => true,
            Some(')') if self.ere && depth > 0 => true,
            Some('\\') if !self.ere => {
                matches!(self.peek2(), Some('|')) || (depth > 0 && self.peek2() == Some(')'))
            }
            _ => false,
        }
    }

    fn cat(&mut self, depth: usize) -> Result<Node, String> {
        let mut items: Vec<Node> = Vec::new();
        let start = self.i;
        while !self.at_group_end(depth) {
            let c = self.peek().unwrap_or('\0');
            // `^` is an anchor at the start (always in ERE), `*` is literal
            // at the start of a BRE.
            if c == '^' && (self.ere || self.i == start) {
                self.i += 1;
                items.push(Node::Bol);
                continue;
            }
            if c == '$' {
                self.i += 1;
                if self.ere || self.at_group_end(depth) {
                    items.push(Node::Eol);
                } else {
                    items.push(Node::Char('$'));
                }
                continue;
            }
            if c == '*' && (items.is_empty() || matches!(items.last(), Some(Node::Bol))) {
                self.i += 1;
                if self.ere {
                    continue;
                }
                items.push(Node::Char('*'));
                continue;
            }
            let atom = self.atom(depth)?;
            let atom = self.quantifiers(atom)?;
            items.push(atom);
        }
        Ok(Node::Cat(items))
    }

    fn quantifiers(&mut self, mut atom: Node) -> Result<Node, String> {
        loop {
            let (min, max, len) = match (self.peek(), self.peek2()) {
                (Some('*'), _) => (0, None, 1),
                (Some('+'), _) if self.ere => (1, None, 1),
                (Some('?'), _) if self.ere => (0, Some(1), 1),
                (Some('\\'), Some('+')) if !self.ere => (1, None, 2),
                (Some('\\'), Some('?')) if !self.ere => (0, Some(1), 2),
                (Some('{'), _) if self.ere => match self.interval(1)? {
                    Some((a, b, l)) => (a, b, l),
                    None => return Ok(atom),
                },
                (Some('\\'), Some('{')) if !self.ere => match self.interval(2)? {
                    Some((a, b, l)) => (a, b, l),
                    None => return Err("Invalid preceding regular expression".into()),
                },
                _ => return Ok(atom),
            };
            self.i += len;
            atom = Node::Rep(Box::new(atom), min, max);
        }
    }

    /// `{m}`, `{m,}`, `{m,n}` (or their BRE `\{ \}` forms) at the cursor.
    fn interval(&mut self, open: usize) -> Result<Option<(u32, Option<u32>, usize)>, String> {
        let mut j = self.i + open;
        let mut text = String::new();
        loop {
            match self.s.get(j) {
                None => return Err("Unmatched \\{".into()),
                Some('\\') if !self.ere && self.s.get(j + 1) == Some(&'}') => {
                    j += 2;
                    break;
                }
                Some('}') if self.ere => {
                    j += 1;
                    break;
                }
                Some(c) => {
                    text.push(*c);
                    j += 1;
                }
            }
        }
        let (a, b) = match text.find(',') {
            Some(k) => (&text[..k], Some(&text[k + 1..])),
            None => (&text[..], None),
        };
        let min: u32 = match a.trim().parse() {
            Ok(n) => n,
            Err(_) if a.is_empty() => 0,
            Err(_) => {
                if self.ere {
                    return Ok(None);
                }
                return Err("Invalid content of \\{\\}".into());
            }
        };
        let max = match b {
            None => Some(min),
            Some("") => None,
            Some(b) => Some(
                b.trim()
                    .parse::<u32>()
                    .map_err(|_| "Invalid content of \\{\\}".to_string())?,
            ),
        };
        if max.is_some_and(|m| m < min) || min > 1000 {
            return Err("Invalid content of \\{\\}".into());
        }
        Ok(Some((min, max, j - self.i)))
    }

    fn atom(&mut self, depth: usize) -> Result<Node, String> {
        let c = self.peek().unwrap_or('\0');
        self.i += 1;
        match c {
            '.' => Ok(Node::Any),
            '[' => self.bracket(),
            '(' if self.ere => self.group(depth),
            '\\' => {
                let e = self.peek().ok_or("Trailing backslash")?;
                self.i += 1;
                match e {
                    '(' if !self.ere => self.group(depth),
                    '1'..='9' => {
                        self.backrefs = true;
                        let n = e as usize - '0' as usize;
                        if n > self.groups {
                            return Err("Invalid back reference".into());
                        }
                        Ok(Node::Backref(n))
                    }
                    'w' | 'W' | 's' | 'S' => {
                        let mut s = Set {
                            neg: e.is_ascii_uppercase(),
                            ..Set::default()
                        };
                        if e.eq_ignore_ascii_case(&'w') {
                            s.classes.push("alnum".into());
                            s.chars.push('_');
                        } else {
                            s.classes.push("space".into());
                        }
                        Ok(Node::Set(s))
                    }
                    'b' => Ok(Node::WordB(true)),
                    'B' => Ok(Node::WordB(false)),
                    '<' => Ok(Node::WordStart),
                    '>' => Ok(Node::WordEnd),
                    'n' => Ok(Node::Char('\n')),
                    't' => Ok(Node::Char('\t')),
                    other => Ok(Node::Char(other)),
                }
            }
            c => Ok(Node::Char(c)),
        }
    }

    fn group(&mut self, depth: usize) -> Result<Node, String> {
        if depth > 100 {
            return Err("Regular expression too big".into());
        }
        self.groups += 1;
        let n = self.groups;
        let inner = self.alt(depth + 1)?;
        if self.ere && self.peek() == Some(')') {
            self.i += 1;
        } else if !self.ere && self.peek() == Some('\\') && self.peek2() == Some(')') {
            self.i += 2;
        } else {
            return Err("Unmatched ( or \\(".into());
        }
        Ok(Node::Group(Box::new(inner), n))
    }

    fn bracket(&mut self) -> Result<Node, String> {
        let mut set = Set::default();
        if self.peek() == Some('^') {
            set.neg = true;
            self.i += 1;
        }
        let mut first = true;
        loop {
            let c = self.peek().ok_or("Unmatched [, [^, [:, [., or [=")?;
            self.i += 1;
            if c == ']' && !first {
                break;
            }
            first = false;
            if c == '[' && matches!(self.peek(), Some(':') | Some('.') | Some('=')) {
                let kind = self.peek().unwrap_or(':');
                let rest: String = self.s[self.i + 1..].iter().collect();
                let close = format!("{kind}]");
                if let Some(end) = rest.find(&close) {
                    let name = rest[..end].to_string();
                    self.i += 1 + name.chars().count() + 2;
                    if kind == ':' {
                        if crate::lib::glob::class_match(&name, 'a')
                            || crate::lib::glob::class_match(&name, '0')
                            || crate::lib::glob::class_match(&name, ' ')
                            || crate::lib::glob::class_match(&name, '!')
                            || crate::lib::glob::class_match(&name, '\x01')
                            || crate::lib::glob::class_match(&name, 'A')
                        {
                            set.classes.push(name);
                        } else {
                            return Err("Invalid character class name".into());
                        }
                    } else {
                        set.chars.extend(name.chars());
                    }
                    continue;
                }
            }
            let lo = c;
            if self.peek() == Some('-') && self.peek2().is_some_and(|n| n != ']') {
                let hi = self.peek2().unwrap_or(lo);
                self.i += 2;
                if hi < lo {
                    return Err("Invalid range end".into());
                }
                set.ranges.push((lo, hi));
            } else {
                set.chars.push(lo);
            }
        }
        Ok(Node::Set(set))
    }
}

fn emit(n: &Node, p: &mut Vec<Inst>) {
    match n {
        Node::Char(c) => p.push(Inst::Char(*c)),
        Node::Any => p.push(Inst::Any),
        Node::Set(s) => p.push(Inst::Set(Box::new(s.clone()))),
        Node::Bol => p.push(Inst::Bol),
        Node::Eol => p.push(Inst::Eol),
        Node::WordB(b) => p.push(Inst::WordB(*b)),
        Node::WordStart => p.push(Inst::WordStart),
        Node::WordEnd => p.push(Inst::WordEnd),
        Node::Backref(k) => p.push(Inst::Backref(*k)),
        Node::Group(inner, k) => {
            p.push(Inst::Save(2 * k));
            emit(inner, p);
            p.push(Inst::Save(2 * k + 1));
        }
        Node::Cat(v) => {
            for x in v {
                emit(x, p);
            }
        }
        Node::Alt(v) => {
            let mut jumps = Vec::new();
            for (i, x) in v.iter().enumerate() {
                if i + 1 < v.len() {
                    let split = p.len();
                    p.push(Inst::Split(split + 1, 0));
                    emit(x, p);
                    jumps.push(p.len());
                    p.push(Inst::Jmp(0));
                    let next = p.len();
                    p[split] = Inst::Split(split + 1, next);
                } else {
                    emit(x, p);
                }
            }
            let end = p.len();
            for j in jumps {
                p[j] = Inst::Jmp(end);
            }
        }
        Node::Rep(inner, min, max) => {
            for _ in 0..*min {
                emit(inner, p);
            }
            match max {
                None => {
                    let split = p.len();
                    p.push(Inst::Split(split + 1, 0));
                    emit(inner, p);
                    p.push(Inst::Jmp(split));
                    let end = p.len();
                    p[split] = Inst::Split(split + 1, end);
                }
                Some(m) => {
                    let mut splits = Vec::new();
                    for _ in *min..*m {
                        splits.push(p.len());
                        p.push(Inst::Split(0, 0));
                        emit(inner, p);
                    }
                    let end = p.len();
                    for s in splits {
                        p[s] = Inst::Split(s + 1, end);
                    }
                }
            }
        }
    }
}

fn is_word(c: Option<&char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || *c == '_')
}

pub type Caps = Vec<Option<usize>>;

impl Regex {
    pub fn new(pattern: &str, ere: bool, icase: bool) -> Result<Regex, String> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut p = Parser {
            s: &chars,
            i: 0,
            ere,
            groups: 0,
            backrefs: false,
        };
        let node = p.alt(0)?;
        if p.i < chars.len() {
            return Err("Unmatched ) or \\)".into());
        }
        let mut prog = Vec::new();
        emit(&node, &mut prog);
        prog.push(Inst::Match);
        if prog.len() > 200_000 {
            return Err("Regular expression too big".into());
        }
        let first = match prog.first() {
            Some(Inst::Char(c)) if !icase => Some(*c),
            _ => None,
        };
        let anchored = matches!(prog.first(), Some(Inst::Bol));
        Ok(Regex {
            prog,
            groups: p.groups,
            icase,
            backrefs: p.backrefs,
            first,
            anchored,
        })
    }

    /// A literal string (grep -F) as a regex.
    pub fn literal(s: &str, icase: bool) -> Regex {
        let mut prog: Vec<Inst> = s.chars().map(Inst::Char).collect();
        prog.push(Inst::Match);
        let first = if icase { None } else { s.chars().next() };
        Regex {
            prog,
            groups: 0,
            icase,
            backrefs: false,
            first,
            anchored: false,
        }
    }

    /// The first match at or after `from`: its captures (0 and 1 are the
    /// whole match). `longest` picks the longest match at the leftmost
    /// position, as POSIX requires of sed's `s`.
    pub fn find_at(&self, text: &[char], from: usize, longest: bool) -> Option<Caps> {
        let mut visited = vec![0u64; (self.prog.len() * (text.len() + 1)).div_ceil(64)];
        for start in from..=text.len() {
            if let Some(f) = self.first {
                if text.get(start) != Some(&f) {
                    continue;
                }
            }
            if self.anchored && start > 0 && text[start - 1] != '\n' && start > from {
                break;
            }
            // States that failed from an earlier start fail again: no reset.
            if let Some(c) = self.run(text, start, longest, &mut visited) {
                return Some(c);
            }
            if self.anchored {
                break;
            }
        }
        None
    }

    pub fn is_match(&self, text: &[char]) -> bool {
        self.find_at(text, 0, false).is_some()
    }

    fn run(&self, text: &[char], start: usize, longest: bool, visited: &mut [u64]) -> Option<Caps> {
        let ncap = 2 * (self.groups + 1);
        let mut caps0: Caps = vec![None; ncap];
        caps0[0] = Some(start);
        let mut stack: Vec<(usize, usize, Caps)> = vec![(0, start, caps0)];
        let mut best: Option<Caps> = None;
        let n = text.len();
        let eq = |a: char, b: char| a == b || (self.icase && a.to_lowercase().eq(b.to_lowercase()));
        let mut steps: u64 = 0;
        while let Some((mut pc, mut pos, mut caps)) = stack.pop() {
            loop {
                steps += 1;
                if self.backrefs && steps > 50_000_000 {
                    return best;
                }
                if !self.backrefs {
                    let k = pc * (n + 1) + pos;
                    if visited[k / 64] & (1 << (k % 64)) != 0 {
                        break;
                    }
                    visited[k / 64] |= 1 << (k % 64);
                }
                match &self.prog[pc] {
                    Inst::Char(c) => {
                        if pos < n && eq(text[pos], *c) {
                            pc += 1;
                            pos += 1;
                        } else {
                            break;
                        }
                    }
                    Inst::Any => {
                        if pos < n && text[pos] != '\n' {
                            pc += 1;
                            pos += 1;
                        } else {
                            break;
                        }
                    }
                    Inst::Set(s) => {
                        if pos < n && s.matches(text[pos], self.icase) {
                            pc += 1;
                            pos += 1;
                        } else {
                            break;
                        }
                    }
                    Inst::Split(a, b) => {
                        stack.push((*b, pos, caps.clone()));
                        pc = *a;
                    }
                    Inst::Jmp(a) => pc = *a,
                    Inst::Save(k) => {
                        if *k < caps.len() {
                            caps[*k] = Some(pos);
                        }
                        pc += 1;
                    }
                    Inst::Bol => {
                        if pos == 0 || text[pos - 1] == '\n' {
                            pc += 1;
                        } else {
                            break;
                        }
                    }
                    Inst::Eol => {
                        if pos == n || text[pos] == '\n' {
                            pc += 1;
                        } else {
                            break;
                        }
                    }
                    Inst::WordB(want) => {
                        let b = is_word(if pos > 0 { text.get(pos - 1) } else { None })
                            != is_word(text.get(pos));
                        if b == *want {
                            pc += 1;
                        } else {
                            break;
                        }
                    }
                    Inst::WordStart => {
                        if !is_word(if pos > 0 { text.get(pos - 1) } else { None })
                            && is_word(text.get(pos))
                        {
                            pc += 1;
                        } else {
                            break;
                        }
                    }
                    Inst::WordEnd => {
                        if is_word(if pos > 0 { text.get(pos - 1) } else { None })
                            && !is_word(text.get(pos))
                        {
                            pc += 1;
                        } else {
                            break;
                        }
                    }
                    Inst::Backref(k) => {
                        let (s, e) = match (
                            caps.get(2 * k).copied().flatten(),
                            caps.get(2 * k + 1).copied().flatten(),
                        ) {
                            (Some(s), Some(e)) if s <= e => (s, e),
                            _ => break,
                        };
                        let len = e - s;
                        if pos + len <= n && (0..len).all(|i| eq(text[s + i], text[pos + i])) {
                            pos += len;
                            pc += 1;
                        } else {
                            break;
                        }
                    }
                    Inst::Match => {
                        caps[1] = Some(pos);
                        if !longest {
                            return Some(caps);
                        }
                        if best.as_ref().is_none_or(|b| b[1].unwrap_or(0) < pos) {
                            best = Some(caps.clone());
                        }
                        break;
                    }
                }
            }
        }
        best
    }
}
