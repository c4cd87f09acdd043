#!/usr/bin/env python3
"""Known answers for MergeKit's PythonRegex (Sources/MergeKit/Support/PythonRegex.swift), from Python's `re`.

Usage (from the repository root; the standard library only):

    python3 Fixtures/python_regex/make_python_regex_cases.py

Writes Fixtures/python_regex/cases.json: for every pattern in PATTERNS, whether Python compiles it (else the
`re.error` message), and for each subject `re.fullmatch(p, s) is not None`, `re.match(p, s) is not None`, and
the groups of `re.match` (numbered groups, then named groups; null for a group that did not take part).
Patterns in UNSUPPORTED are valid Python that PythonRegex refuses on purpose (backreferences, lookaround,
atomic groups, possessive quantifiers, conditionals, inline flags, named characters); the table records
Python's answers for them anyway.

HOSTILE holds the nested-quantifier patterns that make Python's backtracking take minutes on a long module
name. Their answers on the long names are not computed with the hostile pattern (that is the point); the
script takes them from an equivalent pattern without nested quantifiers, and checks on short subjects
(where Python is fast) that the two patterns agree.

Deterministic: fixed lists, sorted JSON keys.
"""

from __future__ import annotations

import json
import os
import re
import sys
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent

NAMES = [
    "q_proj", "model.layers.0.self_attn.q_proj", "model.layers.10.self_attn.v_proj", "model.layers.1.mlp.down_proj",
    "transformer.h.3.attn.c_attn", "model.layers.1.experts.0.w1", "lm_head", "x.proj", "x.q_proj", "",
]

# (pattern, subjects); subjects default to NAMES.
PATTERNS: list[tuple[str, list[str] | None]] = [
    # literals, dot, escapes
    ("q_proj", None), ("a.c", ["abc", "a.c", "a\nc", "ac"]), (r"a\.c", ["abc", "a.c"]),
    (r"\d+", ["123", "12a", "٣", "²", ""]), (r"\D", ["a", "1"]), (r"\w+", ["häßlich_2", "a-b", "²", "x²"]),
    (r"\W", ["-", "_", "é"]), (r"\s", [" ", "\t", "\x1c", "\u00a0", "\u2028", "a", "\x85"]), (r"\S+", ["ab", "a b"]),
    (r"\x2e", [".", "x"]), (r"\u0041\U00000042", ["AB"]), (r"\0", ["\0"]), (r"\012", ["\n"]), (r"\101", ["A"]),
    (r"\t\n\r\f\v\a", ["\t\n\r\f\v\a"]), (r"\-\ \#\\", ["- #\\"]), (r"é+", ["éé", "e"]),
    # classes
    ("[a-c]+", ["abcabc", "abd"]), (r"[^.]+", ["model", "mo.del"]), ("[]a]+", ["]a]", "b"]), ("[a-]+", ["a-a"]),
    ("[-a]+", ["-a"]), (r"[\d_]+", ["1_2", "1.2"]), (r"[\w.]+", ["model.layers.0"]), (r"[^\W\d]+", ["abc", "ab1"]),
    (r"[\x41-\x43]+", ["ABC", "ABD"]), (r"[\b]", ["\b", "b"]), ("[.]", [".", "x"]), (r"[\]]", ["]"]),
    ("[[:alpha:]]", ["a]", ":]", "[]"]), (r"[\s\S]", ["\n", "x"]), ("[^]]", ["a", "]"]), (r"[a\-z]", ["-", "b"]),
    (r"[\101-\103]", ["B", "D"]),
    # groups, alternation
    ("a|b|c", ["a", "b", "d", "ab"]), ("(q|v)_proj", None), ("(?:q|v)_proj", None), ("(?P<x>a)(?P<y>b)?", ["ab", "a"]),
    ("(?#comment)q_proj", None), ("", ["", "a"]), ("|a", ["", "a"]), ("a|", ["", "a"]), ("()", [""]),
    ("(a|ab)(c|bcd)(d*)", ["abcd"]), (r"(.*)(\d+)", ["abc123"]), (r"(.*?)(\d+)", ["abc123"]),
    ("(a)|(b)", ["b"]), ("((a)|b)+", ["ab", "ba"]), ("(a|b)*c", ["ababc", "abab"]),
    # quantifiers
    ("a*", ["", "aaa", "b"]), ("a+", ["", "aa"]), ("a?", ["", "a", "aa"]), ("a{2}", ["a", "aa", "aaa"]),
    ("a{2,}", ["a", "aa", "aaaa"]), ("a{,2}", ["", "aa", "aaa"]), ("a{1,3}", ["", "aaa", "aaaa"]), ("a{,}", ["aaa"]),
    ("a{0}", ["", "a"]), ("a{", ["a{"]), ("a{x}", ["a{x}"]), ("a{1,x}", ["a{1,x}"]), ("{", ["{"]), ("{x", ["{x"]),
    ("x{2}y", ["xxy"]), ("a{ 1}", ["a{ 1}"]), ("a*?", ["aa"]), ("(a+?)(a*)", ["aaa"]), ("(a??)(a*)", ["aa"]),
    ("(a{1,3}?)(a*)", ["aaa"]), ("(ab)*", ["abab", "aba"]), ("(a|)*b", ["aab", "b"]), ("(a*)*b", ["aab", "b"]),
    ("(a*)+", ["b", "aa"]), ("(a*)*", ["b"]), ("()*", [""]), ("(?:)*x", ["x"]), ("(a|)+?b", ["ab"]), ("(a?){2,3}", ["a"]),
    ("(a*){2}(b)", ["b", "aab"]), ("(a|){0,3}b", ["aab"]), ("((a)|b)*?c", ["abc"]), ("(?:(a)|b)*", ["ab", "ba"]),
    # anchors
    ("^a", ["a", "ba"]), ("a$", ["a", "a\n", "a\n\n"]), (r"a\Z", ["a", "a\n"]), (r"\bq", ["q", "x.q", "xq"]),
    (r"q\b", ["q", "q.x", "qx"]), (r"\Bq", ["xq", "q"]), (r"\Aq", ["q"]), ("^$", ["", "\n", "a"]), (r"\B", ["", "a"]),
    (r"\b", ["", "a"]), ("a^b", ["ab"]), ("$", ["", "\n"]), (r"(^|\.)q_proj$", ["q_proj", "x.q_proj", "xq_proj"]),
    # PEFT's spliced patterns: get_pattern_key, layers_pattern, modules_to_save
    (r"(.*\.)?(q_proj)$", None), (r"(.*\.)?(proj)$", None), (r"(.*\.)?(layers.0.self_attn.v_proj)$", None),
    (r"(.*\.)?(q_proj|v_proj)$", None), (r"(.*\.)?(a)|(b)$", ["a", "b", "x.a", "xb"]),
    (r"(.*\.)?(layers\.1\..*)$", None), (r".*?\.[^.]*\.(?P<idx>\d+)\.", None),
    (r"(?:^|.*?\.)layers\.(?P<idx>\d+)\.", None), (r"(?:^|.*?\.)(layers|h)\.(?P<idx>\d+)\.", None),
    (r"(?:^|.*?\.)\.(?P<idx>\d+)\.", None), (r"(^|.*\.)v_proj($|\..*)", None),
    (r".*\.layers\.1\..*(q|v)_proj", None),
    # Python refuses these
    ("(", None), (")", None), ("a)", None), ("*a", None), ("a**", None), ("a{2}{3}", None), ("a{3,2}", None),
    ("[a", None), ("[]", None), ("[b-a]", None), (r"[\d-z]", None), (r"\q", None), (r"\x4", None), ("a{4294967295}", None),
    ("(?P<1>a)", None), ("(?P<a>x)(?P<a>y)", None), ("^*", None), (r"\b+", None), ("(?<x>a)", None), (r"\8", None),
    ("x|*", None), ("(?", None), ("(?P", None), ("(?P<a", None), ("a{,2}{3}", None), (r"\u12", None),
]

UNSUPPORTED = [
    r"(a)\1", "(?P<n>a)(?P=n)", "q(?=_proj)", "q(?!x)", "(?<=x)q", "(?<!x)q", "(?>a+)b", "a*+b", "a++", "a?+",
    "a{1,2}+", "(a)?(?(1)b|c)", "(?i)Q_PROJ", "(?s:.)", r"\N{LATIN SMALL LETTER A}", r".*(?<!x)q_proj",
]

# Nested quantifiers: minutes of backtracking in Python on LONG names; (pattern, equivalent pattern).
HOSTILE = [
    (r"((a|b|c|d|e|l|m|o|p|r|s|t|y|_|\.|[0-9])+)+Q", r"[abcdelmoprsty_.0-9]+Q"),
    (r"(.*\.)?(((a|b|c|d|e|l|m|o|p|r|s|t|y|_|\.|[0-9])+)+Q)$", r"(.*\.)?([abcdelmoprsty_.0-9]+Q)$"),
    (r"(x+x+)+y", r"xx+y"),
    (r"(\w+\.?)*Q", r"(\w|\.)*Q"),
]
LONG = ["model.layers.31.self_attn.q_proj" * 4, "x" * 200, "model.layers.1.mlp.down_proj" * 5 + "Q"]
SHORT = ["model.q", "xxxx", "ab.Q", "a.b1Q", "Q", "xxy", "ab.c"]


def groups(m):
    if m is None:
        return None
    return {"numbered": [m.group(0)] + list(m.groups()), "named": m.groupdict()}


def answers(pattern: str, subjects: list[str], compiled) -> list[dict]:
    out = []
    for s in subjects:
        m = compiled.match(s)
        out.append({"subject": s, "fullmatch": compiled.fullmatch(s) is not None, "match": m is not None,
                    "groups": groups(m)})
    return out


def main() -> int:
    warnings.simplefilter("ignore", FutureWarning)  # "possible nested set": a literal '[' today
    cases = []
    for pattern, subjects in PATTERNS:
        subjects = NAMES if subjects is None else subjects
        try:
            compiled = re.compile(pattern)
        except (re.error, OverflowError) as e:
            cases.append({"pattern": pattern, "python_error": str(e)})
            continue
        cases.append({"pattern": pattern, "results": answers(pattern, subjects, compiled)})
    unsupported = []
    for pattern in UNSUPPORTED:
        compiled = re.compile(pattern)  # valid Python: PythonRegex refuses it on purpose
        unsupported.append({"pattern": pattern, "results": answers(pattern, NAMES[:4], compiled)})
    hostile = []
    for pattern, equivalent in HOSTILE:
        slow, fast = re.compile(pattern), re.compile(equivalent)
        for s in SHORT:
            assert (slow.fullmatch(s) is None) == (fast.fullmatch(s) is None), (pattern, s)
            assert (slow.match(s) is None) == (fast.match(s) is None), (pattern, s)
        hostile.append({"pattern": pattern, "equivalent": equivalent,
                        "results": [{"subject": s, "fullmatch": fast.fullmatch(s) is not None, "match": fast.match(s) is not None}
                                    for s in SHORT + LONG]})
    manifest = {"python": sys.version.split()[0], "cases": cases, "unsupported": unsupported, "hostile": hostile}
    path = HERE / "cases.json"
    path.write_text(json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=True) + "\n")
    os.chmod(path, 0o644)
    print(f"{len(cases)} patterns ({sum('python_error' in c for c in cases)} refused by Python), "
          f"{len(unsupported)} unsupported, {len(hostile)} hostile -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
