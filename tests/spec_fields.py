"""SPEC section 5's item fields, written out from the SPEC rather than imported from the code
under test, for the interface tests (CLI, API) to hold the answers against."""

# an item's fields, in order
ITEM_FIELDS = (
    "id",
    "logged_at",
    "kind",
    "request_id",
    "srv",
    "srv_title",
    "device_id",
    "device_type",
    "smets",
    "user_id",
    "user_role",
    "party_id",
    "response_code",
    "command_variant",
    "access",
)
# the report's columns: an item's, then the own-only ones read from the message's body
REPORT_FIELDS = (*ITEM_FIELDS, "payload", "execution_at", "subject_device_id")
