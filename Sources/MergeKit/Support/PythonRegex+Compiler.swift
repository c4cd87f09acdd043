extension PythonRegex {
    /// Thompson's construction, with splits ordered for backtracking priority.
    struct Compiler {
        var program: [Instruction] = []
        let classes: [CharacterClass]
        /// The first slot after the groups': repetition `k` records its iteration's start in slot
        /// `loopSlots + k` (copies of one repetition run one after another, so they share it).
        let loopSlots: Int

        init(classes: [CharacterClass], loopSlots: Int) {
            self.classes = classes
            self.loopSlots = loopSlots
        }

        mutating func emit(_ instruction: Instruction) {
            program.append(instruction)
        }

        private mutating func checkSize(_ position: Int) throws(SyntaxError) {
            if program.count > PythonRegex.maximumProgramSize {
                throw SyntaxError(message: "the pattern is too complex (it compiles to more than \(PythonRegex.maximumProgramSize) instructions; counted repetitions such as {1000} multiply)", position: position)
            }
        }

        mutating func compile(_ node: Node, position: Int) throws(SyntaxError) {
            try checkSize(position)
            switch node {
            case .empty:
                break
            case .scalar(let c):
                emit(.scalar(c))
            case .any:
                emit(.any)
            case .set(let k):
                emit(.set(k))
            case .assertion(let a):
                emit(.assert(a))
            case .group(let body, let capture):
                if let capture { emit(.save(2 * capture)) }
                try compile(body, position: position)
                if let capture { emit(.save(2 * capture + 1)) }
            case .concatenation(let items):
                for item in items { try compile(item, position: position) }
            case .alternation(let branches):
                // split L1, next; L1: branch1; jump end; next: split L2, … ; last branch
                var jumps: [Int] = []
                for (k, branch) in branches.enumerated() {
                    if k < branches.count - 1 {
                        let split = program.count
                        emit(.split(split + 1, -1))
                        try compile(branch, position: position)
                        jumps.append(program.count)
                        emit(.jump(-1))
                        program[split] = .split(split + 1, program.count)
                    } else {
                        try compile(branch, position: position)
                    }
                }
                for j in jumps { program[j] = .jump(program.count) }
            case .repetition(let body, let min, let max, let greedy, let loop):
                // A body that compiles to nothing repeats to nothing.
                if body.isVoid { return }
                for _ in 0..<min {
                    try compile(body, position: position)
                    try checkSize(position)
                }
                // Each optional iteration records where it started (`slot`) and ends in a loop check.
                let slot = loopSlots + loop
                if let max {
                    // Optional copies nested as (e(e(e)?)?)?: skipping one, or an empty one, skips the rest.
                    var splits: [Int] = [], checks: [Int] = []
                    for _ in min..<max {
                        splits.append(program.count)
                        emit(.split(-1, -1))
                        emit(.save(slot))
                        try compile(body, position: position)
                        checks.append(program.count)
                        emit(.loopCheck(slot: slot, again: -1, exit: -1))
                        try checkSize(position)
                    }
                    let end = program.count
                    for s in splits { program[s] = greedy ? .split(s + 1, end) : .split(end, s + 1) }
                    for c in checks { program[c] = .loopCheck(slot: slot, again: c + 1, exit: end) }
                } else {
                    // L: split body, end; save; body; loop check → L or end
                    let loop = program.count
                    emit(.split(-1, -1))
                    emit(.save(slot))
                    try compile(body, position: position)
                    let check = program.count
                    emit(.loopCheck(slot: slot, again: loop, exit: -1))
                    let end = program.count
                    program[loop] = greedy ? .split(loop + 1, end) : .split(end, loop + 1)
                    program[check] = .loopCheck(slot: slot, again: loop, exit: end)
                }
            }
            try checkSize(position)
        }
    }
}
