"""The demo's last act: a household's alerts evaluated and delivered to a local inbox.

`make demo` signs up a demo household (once), gives it a signed webhook and an e-mail channel
pointing at a LocalInbox the demo starts (a real HTTP receiver and a real SMTP server), creates
four alerts on the simulator's scripted products, then runs the Dagster jobs `alert_evaluation`
and `dispatch_notifications` and prints what arrived. A second demo run finds the alerts already
notified at those prices and says so: nothing is sent twice.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from decimal import Decimal

import psycopg
from rich.console import Console
from rich.table import Table

DEMO_EMAIL = "familia.demo@smartbuy.local"
DEMO_WEBHOOK_SECRET = "demo-webhook-secret"  # a demo value; real channels keep their own secret

SIGN_UP = """
insert into auth.users (email, raw_user_meta_data)
select %(email)s, '{"display_name": "Família Demo"}'::jsonb
where not exists (select 1 from auth.users where email = %(email)s)
"""
HOUSEHOLD = """
select m.household_id from household_members m join auth.users u on u.id = m.user_id
where u.email = %(email)s order by m.created_at limit 1
"""
# The inbox listens on fresh ports each run: point the demo channels at this run's inbox.
RESET_CHANNELS = "delete from notification_channels where household_id = %(household)s and kind in ('webhook', 'email')"
ADD_CHANNEL = """
insert into notification_channels (household_id, kind, target, secret) values (%(household)s, %(kind)s, %(target)s, %(secret)s)
"""
HAS_ALERTS = "select exists (select 1 from alerts where household_id = %(household)s)"
PRODUCT = "select id from products where gtin = %(gtin)s"
# The highest in-stock price of a product: a target everyone of its offers meets, so the safe
# cheapest one is what the household hears about.
TOP_PRICE = """
select max(price) from offers where product_id = %(product)s and active and availability = 'in_stock'
"""
OFFER_PRICE = """
select o.price from offers o join shops s on s.id = o.shop_id
where o.product_id = %(product)s and s.name = %(shop)s
"""
ADD_ALERT = """
insert into alerts (household_id, alert_type, product_id, params) values (%(household)s, %(type)s, %(product)s, %(params)s)
"""


def _gtin(scenario, key: str) -> str:
    return scenario.product_by_key[key].gtin.zfill(14)


def setup_demo_household(conn: psycopg.Connection, scenario, *, webhook_url: str, email: str = DEMO_EMAIL) -> tuple[str, bool]:
    """The demo household with channels to this run's inbox; alerts on first use. Returns
    (household id, whether alerts were created now)."""
    import json

    conn.execute(SIGN_UP, {"email": email})
    household = conn.execute(HOUSEHOLD, {"email": email}).fetchone()[0]
    conn.execute(RESET_CHANNELS, {"household": household})
    conn.execute(ADD_CHANNEL, {"household": household, "kind": "webhook", "target": webhook_url,
                               "secret": DEMO_WEBHOOK_SECRET})
    conn.execute(ADD_CHANNEL, {"household": household, "kind": "email", "target": email, "secret": None})
    if conn.execute(HAS_ALERTS, {"household": household}).fetchone()[0]:
        return str(household), False
    ps5 = conn.execute(PRODUCT, {"gtin": _gtin(scenario, "ps5-slim")}).fetchone()[0]
    iphone = conn.execute(PRODUCT, {"gtin": _gtin(scenario, "iphone-15")}).fetchone()[0]
    airfryer = conn.execute(PRODUCT, {"gtin": _gtin(scenario, "airfryer-walita")}).fetchone()[0]
    ps5_top = conn.execute(TOP_PRICE, {"product": ps5}).fetchone()[0] or Decimal("5000")
    # the scam shop's iPhone is the only one at this price: safe_only keeps it away
    scam_price = conn.execute(OFFER_PRICE, {"product": iphone, "shop": "Super Ofertas BR"}).fetchone()[0]
    scam_target = (scam_price or Decimal("3000")) + Decimal("1.00")
    for alert_type, product, params in (
        ("TARGET_PRICE", ps5, {"target": str(ps5_top + 1)}),
        ("NEW_LOW", ps5, {"days": 30}),
        ("BACK_IN_STOCK", airfryer, {}),
        ("TARGET_PRICE", iphone, {"target": str(scam_target)}),
    ):
        conn.execute(ADD_ALERT, {"household": household, "type": alert_type, "product": product,
                                 "params": json.dumps(params)})
    return str(household), True


def run_alerts_and_dispatch(console: Console, database_url, scenario, *, instance_factory, defs, quiet_config) -> None:
    """Evaluate the alerts and dispatch the notifications through the Dagster jobs, to a local inbox."""
    from smartbuy_pipeline.defs.alerts import window_key
    from smartbuy_pipeline.defs.notifications import ALLOW_PRIVATE_NETWORK_ENV, SMTP_HOST_ENV, SMTP_PORT_ENV
    from smartbuy_pipeline.notifications.inbox import LocalInbox

    with LocalInbox() as inbox:
        console.print(f"[bold]inbox[/] webhook {inbox.base_url}/hooks/familia, SMTP {inbox.smtp_host}:{inbox.smtp_port}")
        with psycopg.connect(database_url.url) as conn:
            household, created = setup_demo_household(
                conn, scenario, webhook_url=inbox.webhook_url("familia", secret=DEMO_WEBHOOK_SECRET))
        console.print(f"[bold]household[/] {household} ({DEMO_EMAIL}): "
                      + ("4 alerts created" if created else "alerts from an earlier demo run"))
        # the demo's channels are on this machine: allow them, and send mail to the inbox
        os.environ[ALLOW_PRIVATE_NETWORK_ENV] = "true"
        os.environ[SMTP_HOST_ENV] = inbox.smtp_host
        os.environ[SMTP_PORT_ENV] = str(inbox.smtp_port)
        now = datetime.now(UTC)
        with instance_factory() as instance:
            evaluation = defs.resolve_job_def("alert_evaluation").execute_in_process(
                instance=instance, partition_key=window_key(now),
                run_config=quiet_config, tags={"smartbuy/actor": "demo"}, raise_on_error=False)
            meta = {k: v.value for m in evaluation.asset_materializations_for_node("alert_candidates")
                    for k, v in m.metadata.items()}
            console.print("[bold]run[/] alert_evaluation: " + ("[green]success[/]" if evaluation.success else "[red]failed[/]")
                          + f", {meta.get('alerts_evaluated', 0)} alerts, {meta.get('matched', 0)} matching, "
                          f"{meta.get('events_created', 0)} new event(s)")
            dispatch = defs.resolve_job_def("dispatch_notifications").execute_in_process(
                instance=instance, run_config=quiet_config, tags={"smartbuy/actor": "demo"}, raise_on_error=False)
            sent = next((e.step_output_data.metadata for e in dispatch.all_events
                         if e.event_type_value == "STEP_OUTPUT"), {})
            console.print("[bold]run[/] dispatch_notifications: " + ("[green]success[/]" if dispatch.success else "[red]failed[/]")
                          + f", {sent['sent'].value if 'sent' in sent else 0} delivered")
        if not (evaluation.success and dispatch.success):
            raise RuntimeError("the alert evaluation or dispatch run failed; see the Dagster UI (`make ui`)")
        console.print(inbox_table(inbox))


def inbox_table(inbox) -> Table:
    from smartbuy_pipeline.domain.notifications import render_short

    table = Table(title="Delivered to the local inbox (signed webhook + e-mail over SMTP)",
                  caption="The iPhone alert's target is only met by the scam shop's offer (bucket C): "
                          "safe_only withholds it. A second demo run sends nothing new: the same price is "
                          "never notified twice.")
    for col in ("channel", "key", "message"):
        table.add_column(col)
    for hook in inbox.hooks("familia"):
        short = render_short(hook.body)
        table.add_row("webhook", hook.headers.get("Idempotency-Key", ""), f"{short.title}: {short.body.splitlines()[0]}")
    for mail in inbox.messages:
        table.add_row(f"e-mail to {mail['To']}", str(mail.get("X-SmartBuy-Idempotency-Key", "")), str(mail["Subject"]))
    if not inbox.hooks("familia") and not inbox.messages:
        table.add_row("-", "-", "no new notifications")
    return table
