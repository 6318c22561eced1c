"""The seed document's task examples, byte for byte (docs/seed-celery.md, "Task Usage
Examples"), as the bank's own code.

Running this module SENDS three tasks: the `run_banktasks_examples` command executes it
(runpy); nothing imports it. `core` here is banktasks' package, installed in the same
virtualenv, not this project's `core` app, whose module is `bankcore` (see
bankcore/apps.py). The block stays at module level, so that it is byte-identical to the
document, indentation included.
"""

# The seed's block calls export_transaction_data without importing it.
from core.tasks import export_transaction_data  # isort: skip

# fmt: off
from core.tasks import generate_daily_reports, send_email_notification

# Generate daily reports
result = generate_daily_reports.delay()

# Send email notification
send_email_notification.delay(
    user_id=1,
    subject="Account Update",
    message="Your account has been updated successfully."
)

# Export transaction data
export_transaction_data.delay(
    user_id=1,
    start_date="2024-01-01",
    end_date="2024-01-31",
    export_format="csv"
)
# fmt: on
