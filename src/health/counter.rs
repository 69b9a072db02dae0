//! Consecutive-result counting for active checks (HAProxy's `rise`/`fall`,
//! rpxy's `ConsecutiveCounter`): a backend goes down after `fall` failures in
//! a row and comes back after `rise` successes in a row. A backend that has
//! never been up comes up at its *first* success, so a new container is in
//! rotation as soon as it can answer.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consecutive {
    rise: u32,
    fall: u32,
    up: bool,
    ever_up: bool,
    /// Results in a row that disagree with the current state.
    streak: u32,
}

impl Consecutive {
    /// Starts down (never up).
    pub fn new(rise: u32, fall: u32) -> Consecutive {
        Consecutive {
            rise: rise.max(1),
            fall: fall.max(1),
            up: false,
            ever_up: false,
            streak: 0,
        }
    }

    pub fn is_up(&self) -> bool {
        self.up
    }

    pub fn ever_up(&self) -> bool {
        self.ever_up
    }

    /// Record a result; returns the new state when it flipped.
    pub fn record(&mut self, ok: bool) -> Option<bool> {
        if ok == self.up {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = match (ok, self.ever_up) {
            (true, false) => 1,
            (true, true) => self.rise,
            (false, _) => self.fall,
        };
        if self.streak >= needed {
            self.up = ok;
            self.ever_up |= ok;
            self.streak = 0;
            return Some(ok);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(c: &mut Consecutive, results: &str) -> String {
        results
            .chars()
            .map(|r| match c.record(r == '+') {
                Some(true) => 'U',
                Some(false) => 'D',
                None => '.',
            })
            .collect()
    }

    #[test]
    fn first_success_brings_a_new_backend_up() {
        let mut c = Consecutive::new(2, 3);
        assert_eq!(run(&mut c, "--+"), "..U");
    }

    #[test]
    fn fall_failures_in_a_row_take_it_down_and_rise_successes_bring_it_back() {
        let mut c = Consecutive::new(2, 3);
        assert_eq!(run(&mut c, "+--+---+-++"), "U.....D...U");
    }

    #[test]
    fn an_interrupted_streak_starts_over() {
        let mut c = Consecutive::new(3, 2);
        assert_eq!(run(&mut c, "+-+-+--"), "U.....D");
        assert_eq!(run(&mut c, "++-+++"), ".....U");
    }
}
