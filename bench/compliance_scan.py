"""Benchmark: sensitive-word scan of mixed Chinese/English messages on one core.

100,000 messages (20-200 characters, templates of notifications, marketing and chat with random
fills; about 2% carry an obfuscated listed word) against a generated 10,000-word list
(Chinese words of 2-4 characters, English words, some traditional-character forms).
``--api scan_many`` (default) checks the messages as the send path checks a batch, with
``Matcher.scan_many``; ``--api scan`` calls ``Matcher.scan`` once per message (single sends,
the console's test box). Both flag the same messages.
Prints one JSON line: wall-clock rate and the rate per CPU second of this process (on a shared
machine the second is the one-core figure; ``load_1m`` says how shared it was).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time

from tessera.connect.compliance import Action, Matcher, WordEntry

_COMMON_ZH = (
    "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下"
    "过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两"
    "体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线"
    "内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并"
    "提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见"
    "计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处队南给色光门即保治北造百规热领七"
    "海口东导器压志世金增争济阶油思术极交受联什认六共权收证改清己美再采转更单风切打白教速花带安场"
    "身车例真务具万每目至达走积示议声报斗完类八离华名确才科张信马节话米整空元况今集温传土许步群广"
    "石记需段研界拉林律叫且究观越织装影算低持音众书布复容儿须际商非验连断深难近矿千周委素技备半办"
    "青省列习响约支般史感劳便团往酸历市克何除消构府称太准精值号率族维划选标写存候毛亲快效斯院查江"
    "您请优惠活动订单快递验证码登录账户余额充值提现分钟有效客服热线回复退订银行尊敬的会员积分兑换"
)
_TRAD = "驗證碼優惠會員積分兌換銀行請回復退訂賬戶餘額"
_EN_WORDS = [
    "your",
    "order",
    "has",
    "been",
    "shipped",
    "track",
    "it",
    "at",
    "the",
    "link",
    "below",
    "reply",
    "stop",
    "to",
    "opt",
    "out",
    "verification",
    "code",
    "is",
    "valid",
    "for",
    "minutes",
    "do",
    "not",
    "share",
    "it",
    "with",
    "anyone",
    "sale",
    "ends",
    "tonight",
    "get",
    "off",
    "everything",
    "free",
    "shipping",
    "on",
    "orders",
    "over",
    "meeting",
    "reminder",
    "tomorrow",
    "at",
    "please",
    "confirm",
    "appointment",
    "thanks",
    "for",
    "shopping",
    "with",
    "us",
    "limited",
    "offer",
    "new",
    "arrivals",
    "account",
]
_PUNCT_ZH = "，。！？、：；“”【】（）"
_PUNCT_EN = ",.!?:;-()"
_SEPARATORS = ["-", " ", ".", "*", "\u200b", "、", "·", "|", "_"]


def _zh_word(rnd: random.Random, pool: str) -> str:
    return "".join(rnd.choice(pool) for _ in range(rnd.choice((2, 2, 3, 3, 3, 4, 4))))


def _en_word(rnd: random.Random) -> str:
    syllables = [
        rnd.choice("bcdfghjklmnprstvwz") + rnd.choice("aeiou") + rnd.choice(("", "n", "r", "x"))
        for _ in range(rnd.randint(2, 4))
    ]
    return "".join(syllables)


def build_words(rnd: random.Random, count: int) -> list[WordEntry]:
    pool = "".join(sorted(set(_COMMON_ZH))) + "".join(chr(rnd.randint(0x4E00, 0x9FA5)) for _ in range(2500))
    actions = [Action.BLOCK, Action.HOLD, Action.REPLACE]
    categories = ["fraud", "gambling", "adult", "politics", "contact", "abuse"]
    words: set[str] = set()
    while len(words) < count:
        r = rnd.random()
        words.add(_zh_word(rnd, pool) if r < 0.7 else _en_word(rnd))
    return [
        WordEntry(
            w,
            rnd.choice(categories),
            rnd.choice(actions),
            "***" if i % 3 == 2 else None,
        )
        for i, w in enumerate(sorted(words))
    ]


def build_messages(rnd: random.Random, count: int, words: list[WordEntry]) -> list[str]:
    messages: list[str] = []
    for _ in range(count):
        target = rnd.randint(20, 200)
        parts: list[str] = []
        length = 0
        kind = rnd.random()
        if kind < 0.45:  # Chinese with digits, latin brand names, full-width punctuation
            parts.append("【" + "".join(rnd.choice(_COMMON_ZH) for _ in range(rnd.randint(2, 4))) + "】")
            while length < target:
                r = rnd.random()
                if r < 0.75:
                    piece = "".join(rnd.choice(_COMMON_ZH) for _ in range(rnd.randint(2, 8)))
                elif r < 0.85:
                    piece = str(rnd.randint(10, 999999))
                elif r < 0.9:
                    piece = "".join(rnd.choice(_TRAD) for _ in range(rnd.randint(2, 4)))
                else:
                    piece = rnd.choice(_EN_WORDS).upper() if rnd.random() < 0.3 else rnd.choice(_EN_WORDS)
                piece += rnd.choice(_PUNCT_ZH) if rnd.random() < 0.3 else ""
                parts.append(piece)
                length += len(piece)
        elif kind < 0.8:  # English
            while length < target:
                piece = rnd.choice(_EN_WORDS)
                if rnd.random() < 0.1:
                    piece = piece.capitalize()
                if rnd.random() < 0.1:
                    piece = str(rnd.randint(1, 99999))
                piece += rnd.choice(_PUNCT_EN) if rnd.random() < 0.12 else " "
                parts.append(piece)
                length += len(piece)
        else:  # mixed
            while length < target:
                piece = (
                    "".join(rnd.choice(_COMMON_ZH) for _ in range(rnd.randint(2, 6)))
                    if rnd.random() < 0.6
                    else " " + rnd.choice(_EN_WORDS) + " "
                )
                parts.append(piece)
                length += len(piece)
        text = "".join(parts)[:target]
        if rnd.random() < 0.02:  # an obfuscated listed word
            word = rnd.choice(words).word
            sep = rnd.choice(_SEPARATORS)
            at = rnd.randint(0, len(text))
            text = text[:at] + sep.join(word) + text[at:]
        messages.append(text)
    return messages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--words", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--api", choices=("scan_many", "scan"), default="scan_many")
    args = parser.parse_args()
    rnd = random.Random(args.seed)
    words = build_words(rnd, args.words)
    messages = build_messages(rnd, args.messages, words)
    build_start = time.perf_counter()
    matcher = Matcher(words)
    build_seconds = time.perf_counter() - build_start
    scan = matcher.scan
    scan(messages[0])  # warm caches
    start, cpu_start = time.perf_counter(), time.process_time()
    flagged = 0
    if args.api == "scan_many":
        for result in matcher.scan_many(messages):
            if result is not None and result.hits:
                flagged += 1
    else:
        for message in messages:
            if scan(message).hits:
                flagged += 1
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    print(
        json.dumps(
            {
                "bench": "compliance_scan",
                "api": args.api,
                "messages": len(messages),
                "words": len(matcher),
                "seconds": round(seconds, 3),
                "messages_per_s": round(len(messages) / seconds),
                "cpu_seconds": round(cpu_seconds, 3),
                "messages_per_cpu_s": round(len(messages) / cpu_seconds),
                "load_1m": round(os.getloadavg()[0], 2),
                "flagged": flagged,
                "avg_chars": round(sum(map(len, messages)) / len(messages), 1),
                "build_seconds": round(build_seconds, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
