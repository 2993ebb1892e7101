"""The web console: server-rendered Jinja2 + htmx pages under ``/console``.

How another context adds pages (in ``tessera/<context>/views.py``, listed in ``modules.VIEWS``)::

    from typing import Annotated
    from fastapi import Depends
    from tessera.console.web import Page, console_router, page
    from tessera.console.registry import NavItem, SearchHit, Tile, register_nav, register_search, register_tile
    from tessera.console.components import Column, ListPage, BulkAction, Action, Tab, schema_form, ...

    router = console_router("/contacts")            # routes under /console/contacts, HTML errors
    register_nav(NavItem("contacts", "Contacts", "/console/contacts", "contacts:read", module="contacts"))

    LIST = ListPage(key="contacts", title=_l("Contacts"), filterset=CONTACT_FILTERS, columns=[...],
                    row_href=lambda c: f"/console/contacts/{c.id}", bulk_actions=[...])

    @router.get("")
    async def contacts(pg: Annotated[Page, Depends(page("contacts:read"))]):
        return LIST.respond(pg, await LIST.run(pg, select(Contact)))   # HTML, htmx rows or CSV

Pages render templates that extend ``console/frame.html`` and import the macros in
``console/components/`` (``list.html``: list_page; ``detail.html``: header, tabs, kv;
``form.html``: fields, form; ``widgets.html``: tiles, chart, timeline, tree, kanban, empty).
A context keeps its templates in ``tessera/<context>/templates/<context>/`` and calls
``tessera.console.web.add_template_dir(Path(__file__).parent / "templates")`` once, then renders
``pg.render("<context>/x.html", …)``.

Forms: ``schema_form(Schema, values, labels=, options=, only=)`` → ``form_data(request form)`` →
``validate_form`` (pydantic errors on their fields) → call the service → ``apply_error(form, exc)``
maps a ``TesseraError`` onto its ``field`` (or a banner). Every POST carries the CSRF token (the
``csrf_token`` field; htmx sends ``X-CSRF-Token``); ``page()`` checks it.

Strings: ``tessera.console.i18n._`` / ``_l`` in Python, ``{{ _("…") }}`` in templates. A context
keeps the translations of its own pages in ``tessera/<context>/i18n/<locale>/<area>.po`` (plain
msgid/msgstr pairs, no compilation), merged at start-up over the console's catalogue;
``tests/console/test_i18n_complete.py`` extracts every string from the source and fails on any
without a Chinese translation. The console's own catalogue (``console/i18n/<locale>/LC_MESSAGES``,
``.po`` and compiled ``.mo``, committed) is refreshed with::

    pybabel extract -F src/tessera/console/i18n/babel.cfg -k _l -k NavItem:2 --no-location \\
        --sort-output -o src/tessera/console/i18n/messages.pot src/tessera/console
    pybabel update -i src/tessera/console/i18n/messages.pot -d src/tessera/console/i18n -l zh_Hans
    pybabel compile -d src/tessera/console/i18n
"""
