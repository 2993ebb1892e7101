"""Every string the console shows is translated into Simplified Chinese.

The strings are extracted from the source itself (Python and templates of every context), so a
page added without its translations fails here, whatever the committed ``.pot`` says.
"""

from __future__ import annotations

from pathlib import Path

from babel.messages.extract import extract_from_dir

from tessera.console import i18n

SRC = Path(i18n.__file__).resolve().parents[1]
KEYWORDS = {"_": None, "_l": None, "gettext": None, "ngettext": (1, 2), "NavItem": (2,)}
METHODS = [("**/templates/**.html", "jinja2"), ("**.py", "python")]
OPTIONS = {"**/templates/**.html": {"extensions": "jinja2.ext.i18n"}}


def _msgids() -> dict[str, str]:
    found: dict[str, str] = {}
    for filename, _lineno, message, _comments, _ctx in extract_from_dir(
        str(SRC), METHODS, keywords=KEYWORDS, options_map=OPTIONS
    ):
        msgid = message[0] if isinstance(message, tuple) else message
        if msgid:
            found.setdefault(msgid, filename)
    return found


def test_every_console_string_has_a_chinese_translation() -> None:
    i18n.translations.cache_clear()
    zh = i18n.translations("zh_Hans")
    known = {k[0] if isinstance(k, tuple) else k for k, v in zh._catalog.items() if v}  # type: ignore[attr-defined]
    missing = {msgid: where for msgid, where in _msgids().items() if msgid not in known}
    assert missing == {}, f"{len(missing)} untranslated strings, e.g. {list(missing.items())[:10]}"


def test_context_catalogues_merge_over_the_console_catalogue(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    ctx = tmp_path / "demo" / "i18n" / "zh_Hans"
    ctx.mkdir(parents=True)
    (ctx / "pages.po").write_text('msgid "Widgets"\nmsgstr "小部件"\n', encoding="utf-8")
    monkeypatch.setattr(i18n, "SRC", tmp_path)
    i18n.translations.cache_clear()
    try:
        zh = i18n.translations("zh_Hans")
        assert zh.gettext("Widgets") == "小部件"
        assert zh.gettext("Users") == "用户"
    finally:
        i18n.translations.cache_clear()
