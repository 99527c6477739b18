"""Regenerate src/servicetrail/domain/response_code_data.py from the DUIS XML schema.

    python scripts/gen_response_codes.py "../shared/duis/schema/DUIS Schema V5.4.xsd"

The product must not need the schema at run time, so the code lists it defines are carried
as packaged data: the 194 `ResponseCode` values of a Response's header, the DCC Alert codes
(`DCCAlertMessage/DCCAlertCode`) and the two future-dated outcome codes
(`FutureDatedDeviceAlertMessage/FutureDatedAlertCode`). A Device Alert's own `AlertCode` is
`xs:hexBinary` in the schema (a GBCS alert code such as 8F35), not a list.

The schema has no annotation on any code, so their meanings come from the sources below and
only from them; every code without one is explained by `domain/response_codes.py` as a DUIS
code whose meaning servicetrail does not carry, never guessed.

Sources of MEANINGS (each entry names its own):
  [README]  ../shared/reference/README.md, "Response codes with known meanings" (the project's
            reference data, taken from DUIS).
  [SMETS2]  "DCC Systems Response Codes", a SMETS2 reference page reproducing the DUIS response
            code table: https://iananthony3000.wixsite.com/smets2reference-1/copy-of-esme-sr-list
            (read for I0 to E30; its copy stops there).
  [BOXED]   SmartDCCInnovation/dccboxed-nodered-nodes, README.md and src/dccboxed-send: I99 is
            the acknowledgement that precedes the Device's response.
  [GBCS]    SmartDCCInnovation/gbcs-parser, src/util.ts, the GBCS alert code names 0x8F66 and
            0x8F67 (the only alert codes the DUIS schema lists).
The wording is ours; none of these sources' text or code is copied.
"""
import sys
from pathlib import Path

from lxml import etree

XS = {"xs": "http://www.w3.org/2001/XMLSchema"}

MEANINGS = {
    # Information
    "I0": "Success: the request had a successful outcome",  # [README] [SMETS2]
    "I99": ("Acknowledgement: the DCC accepted the request for sending to the Device (it passed "
            "access control); also the answer to a successful Non-Device Service Request that "
            "returns no data"),  # [README] [SMETS2] [BOXED]
    # Errors
    "E1": "Failed authorisation: invalid User / User Role (not a valid SEC Party and User Role)",  # [README] [SMETS2]
    "E2": "Failed authorisation: the User Role may not send this Service Reference",  # [README] [SMETS2]
    "E3": "Failed authorisation: the User's status does not allow this Service Reference",  # [README] [SMETS2]
    "E4": ("Failed authorisation: User Role not authorised for the Device at the required date "
           "and time"),  # [README] [SMETS2]
    "E5": ("Failed authorisation: the Device's status in the Smart Metering Inventory does not allow "
           "this Service Reference"),  # [README] [SMETS2]
    "E11": "Failed validation: the Service Request is not valid for the Device's type",  # [README] [SMETS2]
    "E12": "Failed validation: the Command Variant is not valid for this request",  # [README] [SMETS2]
    "E13": ("Failed validation: the request type is not valid for the URL it was sent to (e.g. a "
            "Non-Device Service Request sent to the Transform URL)"),  # [README] [SMETS2]
    "E17": ("Failed authorisation: the Service Request or signed Pre-Command is not available for "
            "local command delivery"),  # [README] [SMETS2]
    "E19": "Failed authorisation: the Device does not exist (invalid Device ID)",  # [README] [SMETS2]
    "E20": "Communications failure: the DCC could not establish communications with the Device",  # [README] [SMETS2]
    "E21": ("Communications failure: no response from the Device to an on-demand or future-dated "
            "command"),  # [README] [SMETS2]
    "E30": "Time-out of a future-dated command",  # [README] [SMETS2]
    # Device Alert codes (GBCS, hexadecimal) that the schema names
    "8F66": "Device Alert: a future-dated command was carried out successfully on the Device",  # [GBCS]
    "8F67": "Device Alert: a future-dated command was not carried out successfully on the Device",  # [GBCS]
}


def enumeration(schema: etree._ElementTree, xpath: str) -> tuple[str, ...]:
    values = tuple(schema.xpath(xpath + "/xs:restriction/xs:enumeration/@value", namespaces=XS))
    if not values or len(set(values)) != len(values):
        sys.exit(f"{xpath}: expected a list of distinct codes, found {values!r}")
    return values


def main(xsd: str) -> None:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    schema = etree.parse(xsd, parser)
    response = enumeration(schema, "/xs:schema/xs:simpleType[@name='ResponseCode']")
    dcc_alert = enumeration(schema, "//xs:element[@name='DCCAlertCode']/xs:simpleType")
    future = enumeration(schema, "//xs:element[@name='FutureDatedAlertCode']/xs:simpleType")
    unknown = set(MEANINGS) - set(response) - set(future)
    if unknown:
        sys.exit(f"meanings for codes the schema does not define: {sorted(unknown)}")

    def listing(name: str, values: tuple[str, ...], comment: str) -> list[str]:
        lines = [f"# {comment}", f"{name}: tuple[str, ...] = ("]
        row = "   "
        for value in values:
            if len(row) + len(value) + 4 > 100:
                lines.append(row)
                row = "   "
            row += f" {value!r},"
        return lines + [row, ")", ""]

    lines = [
        f'"""DUIS response and alert codes, from {Path(xsd).name}. Generated by '
        'scripts/gen_response_codes.py:',
        'edit the script, not this file; it cites the source of every meaning."""',
        "",
        *listing("RESPONSE_CODES", response, "simpleType ResponseCode: every Response header's code, in the schema's order"),
        *listing("DCC_ALERT_CODES", dcc_alert, "DCCAlertMessage/DCCAlertCode"),
        *listing("FUTURE_DATED_ALERT_CODES", future, "FutureDatedDeviceAlertMessage/FutureDatedAlertCode (GBCS alert codes)"),
        "# meanings found in a public source (see the script)",
        "MEANINGS: dict[str, str] = {",
        *(f"    {code!r}: {text!r}," for code, text in MEANINGS.items()),
        "}",
    ]
    out = Path(__file__).resolve().parents[1] / "src/servicetrail/domain/response_code_data.py"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {len(response)} response codes, {len(dcc_alert)} DCC Alert codes, "
          f"{len(future)} future-dated alert codes and {len(MEANINGS)} meanings to {out}")


if __name__ == "__main__":
    main(sys.argv[1])
