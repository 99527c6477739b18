"""DUIS messages written to measure for the ingest tests: the Parties and Devices they name,
a request and a response, and the titles the store keeps of them."""

from __future__ import annotations


NS = (
    'xmlns:sr="http://www.dccinterface.co.uk/ServiceUserGateway" '
    'xmlns:ds="http://www.w3.org/2000/09/xmldsig#" '
    'xmlns:ra="http://www.dccinterface.co.uk/ResponseAndAlert"'
)
NORTH_IS = "90-B3-D5-1F-30-01-00-00"  # NORTH: Responsible Supplier of both meters


DCC = "90-B3-D5-1F-30-00-00-02"
ESME = "00-DB-12-34-56-78-90-A0"  # SMETS2


def request(rid: str, variant: int, srv: str, body: str) -> str:
    ref = srv if srv.count(".") < 2 else srv.rsplit(".", 1)[0]
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><sr:Request {NS} schemaVersion="5.4"><sr:Header>'
        f"<sr:RequestID>{rid}</sr:RequestID><sr:CommandVariant>{variant}</sr:CommandVariant>"
        f"<sr:ServiceReference>{ref}</sr:ServiceReference>"
        f"<sr:ServiceReferenceVariant>{srv}</sr:ServiceReferenceVariant></sr:Header>"
        f"<sr:Body>{body}</sr:Body></sr:Request>"
    )


def response(rid: str, response_id: str, code: str, at: str, message: str) -> str:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><sr:Response {NS} schemaVersion="5.4"><sr:Header>'
        + (f"<sr:RequestID>{rid}</sr:RequestID>" if rid else "")
        + (f"<sr:ResponseID>{response_id}</sr:ResponseID>" if response_id else "")
        + f"<sr:ResponseCode>{code}</sr:ResponseCode>"
        f"<sr:ResponseDateTime>{at}</sr:ResponseDateTime>"
        f"</sr:Header><sr:Body>{message}</sr:Body></sr:Response>"
    )


def titles(srv: str, extra: str = "") -> str:
    ref = srv if srv.count(".") < 2 else srv.rsplit(".", 1)[0]
    return (
        f"<sr:ResponseMessage><sr:ServiceReference>{ref}</sr:ServiceReference>"
        f"<sr:ServiceReferenceVariant>{srv}</sr:ServiceReferenceVariant>{extra}</sr:ResponseMessage>"
    )


READ = "<sr:ReadInstantaneousImportRegisters/>"
