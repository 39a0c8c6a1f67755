"""The simulated PTZ camera's ONVIF services: SOAP 1.2 on 127.0.0.1 over the head's `PtzState`.

Device, media and PTZ services: GetSystemDateAndTime, GetCapabilities, GetServices, GetProfiles,
GetStreamUri, GetPresets, GotoPreset, GetStatus with MoveStatus and UtcTime. A WS-Security UsernameToken
(digest or plain) is checked when a user is set; GetSystemDateAndTime is always open, as on real cameras.
"""

from __future__ import annotations

import base64
import hashlib
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from xml.sax.saxutils import escape

from citywatch.stack.processes import LOOPBACK
from citywatch.stack.ptz_head import Preset, PtzState

PROFILE_TOKEN = "profile-main"

NS = {
    "env": "http://www.w3.org/2003/05/soap-envelope",
    "tds": "http://www.onvif.org/ver10/device/wsdl",
    "trt": "http://www.onvif.org/ver10/media/wsdl",
    "tptz": "http://www.onvif.org/ver20/ptz/wsdl",
    "tt": "http://www.onvif.org/ver10/schema",
    "ter": "http://www.onvif.org/ver10/error",
    "wsse": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd",
    "wsu": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd",
}
_ENVELOPE = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<env:Envelope xmlns:env="{env}" xmlns:tds="{tds}" xmlns:trt="{trt}" xmlns:tptz="{tptz}" xmlns:tt="{tt}" '
    'xmlns:ter="{ter}"><env:Body>{{body}}</env:Body></env:Envelope>'
).format(**NS)


class SoapFault(Exception):
    def __init__(self, subcode: str, reason: str, *, sender: bool = True) -> None:
        super().__init__(reason)
        self.subcode = subcode
        self.reason = reason
        self.sender = sender


def _text(parent: ET.Element, path: str) -> str | None:
    node = parent.find(path, NS)
    return None if node is None or node.text is None else node.text.strip()


def _check_auth(envelope: ET.Element, user: str, password: str) -> None:
    token = envelope.find("env:Header/wsse:Security/wsse:UsernameToken", NS)
    if token is None:
        raise SoapFault("ter:NotAuthorized", "Sender not authorized: no UsernameToken")
    name, given = _text(token, "wsse:Username"), _text(token, "wsse:Password")
    nonce, created = _text(token, "wsse:Nonce") or "", _text(token, "wsu:Created") or ""
    digest = base64.b64encode(
        hashlib.sha1(base64.b64decode(nonce) + created.encode() + password.encode()).digest()
    ).decode()
    if name != user or given not in {digest, password}:
        raise SoapFault("ter:NotAuthorized", "Sender not authorized: wrong user or password")


def _position(preset: Preset | None) -> str:
    pan, tilt = (0.0, 0.0) if preset is None else (preset.pan, preset.tilt)
    return f'<tt:PanTilt x="{pan:.3f}" y="{tilt:.3f}"/><tt:Zoom x="0.000"/>'


class OnvifHandler(BaseHTTPRequestHandler):
    server: OnvifServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per SOAP call would drown the camera's log

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            envelope = ET.fromstring(self.rfile.read(length))
            body = envelope.find("env:Body", NS)
            if body is None or len(body) == 0:
                raise SoapFault("ter:InvalidArgVal", "no SOAP body")
            operation = body[0].tag.rsplit("}", 1)[-1]
            if operation != "GetSystemDateAndTime" and self.server.user:  # that one is always open
                _check_auth(envelope, self.server.user, self.server.password)
            payload, status = self.server.answer(operation, body[0]), 200
        except SoapFault as fault:
            side = "env:Sender" if fault.sender else "env:Receiver"
            payload = (
                f"<env:Fault><env:Code><env:Value>{side}</env:Value><env:Subcode><env:Value>{fault.subcode}"
                f'</env:Value></env:Subcode></env:Code><env:Reason><env:Text xml:lang="en">{escape(fault.reason)}'
                "</env:Text></env:Reason></env:Fault>"
            )
            status = 400 if fault.sender else 500
        except ET.ParseError as error:
            reason = f"<env:Reason><env:Text>{escape(str(error))}</env:Text></env:Reason>"
            payload, status = f"<env:Fault>{reason}</env:Fault>", 400
        data = _ENVELOPE.format(body=payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/soap+xml; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class OnvifServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, state: PtzState, user: str, password: str, rtsp_url: str) -> None:
        super().__init__((LOOPBACK, port), OnvifHandler)
        self.state = state
        self.user = user
        self.password = password
        self.rtsp_url = rtsp_url
        self.base = f"http://{LOOPBACK}:{port}/onvif"

    def answer(self, operation: str, request: ET.Element) -> str:
        handler = getattr(self, f"op_{operation}", None)
        if handler is None:
            raise SoapFault("ter:ActionNotSupported", f"{operation} is not supported by this simulator")
        result: str = handler(request)
        return result

    def op_GetSystemDateAndTime(self, _request: ET.Element) -> str:
        now = datetime.now(UTC)
        return (
            "<tds:GetSystemDateAndTimeResponse><tds:SystemDateAndTime><tt:DateTimeType>NTP</tt:DateTimeType>"
            "<tt:DaylightSavings>false</tt:DaylightSavings><tt:TimeZone><tt:TZ>UTC0</tt:TZ></tt:TimeZone>"
            f"<tt:UTCDateTime><tt:Time><tt:Hour>{now.hour}</tt:Hour><tt:Minute>{now.minute}</tt:Minute>"
            f"<tt:Second>{now.second}</tt:Second></tt:Time><tt:Date><tt:Year>{now.year}</tt:Year>"
            f"<tt:Month>{now.month}</tt:Month><tt:Day>{now.day}</tt:Day></tt:Date></tt:UTCDateTime>"
            "</tds:SystemDateAndTime></tds:GetSystemDateAndTimeResponse>"
        )

    def op_GetServices(self, _request: ET.Element) -> str:
        services = [("tds", "device_service"), ("trt", "media_service"), ("tptz", "ptz_service")]
        entries = "".join(
            f"<tds:Service><tds:Namespace>{NS[prefix]}</tds:Namespace><tds:XAddr>{self.base}/{path}</tds:XAddr>"
            "<tds:Version><tt:Major>2</tt:Major><tt:Minor>60</tt:Minor></tds:Version></tds:Service>"
            for prefix, path in services
        )
        return f"<tds:GetServicesResponse>{entries}</tds:GetServicesResponse>"

    def op_GetCapabilities(self, _request: ET.Element) -> str:
        return (
            "<tds:GetCapabilitiesResponse><tds:Capabilities>"
            f"<tt:Device><tt:XAddr>{self.base}/device_service</tt:XAddr></tt:Device>"
            f"<tt:Media><tt:XAddr>{self.base}/media_service</tt:XAddr><tt:StreamingCapabilities>"
            "<tt:RTPMulticast>false</tt:RTPMulticast><tt:RTP_TCP>true</tt:RTP_TCP><tt:RTP_RTSP_TCP>true"
            "</tt:RTP_RTSP_TCP></tt:StreamingCapabilities></tt:Media>"
            f"<tt:PTZ><tt:XAddr>{self.base}/ptz_service</tt:XAddr></tt:PTZ>"
            "</tds:Capabilities></tds:GetCapabilitiesResponse>"
        )

    def op_GetProfiles(self, _request: ET.Element) -> str:
        return (
            f'<trt:GetProfilesResponse><trt:Profiles token="{PROFILE_TOKEN}" fixed="true"><tt:Name>main</tt:Name>'
            '<tt:PTZConfiguration token="ptz-config"><tt:Name>ptz</tt:Name><tt:UseCount>1</tt:UseCount>'
            "<tt:NodeToken>ptz-node</tt:NodeToken></tt:PTZConfiguration></trt:Profiles></trt:GetProfilesResponse>"
        )

    def op_GetStreamUri(self, _request: ET.Element) -> str:
        return (
            f"<trt:GetStreamUriResponse><trt:MediaUri><tt:Uri>{escape(self.rtsp_url)}</tt:Uri>"
            "<tt:InvalidAfterConnect>false</tt:InvalidAfterConnect><tt:InvalidAfterReboot>false"
            "</tt:InvalidAfterReboot><tt:Timeout>PT0S</tt:Timeout></trt:MediaUri></trt:GetStreamUriResponse>"
        )

    def _profile(self, request: ET.Element) -> None:
        token = _text(request, "tptz:ProfileToken")
        if token != PROFILE_TOKEN:
            raise SoapFault("ter:NoProfile", f"no media profile {token!r}")

    def op_GetPresets(self, request: ET.Element) -> str:
        self._profile(request)
        presets = "".join(
            f'<tptz:Preset token="{escape(p.token)}"><tt:Name>{escape(p.name)}</tt:Name>'
            f"<tt:PTZPosition>{_position(p)}</tt:PTZPosition></tptz:Preset>"
            for p in self.state.presets.values()
        )
        return f"<tptz:GetPresetsResponse>{presets}</tptz:GetPresetsResponse>"

    def op_GotoPreset(self, request: ET.Element) -> str:
        self._profile(request)
        token = _text(request, "tptz:PresetToken") or ""
        if token not in self.state.presets:
            raise SoapFault("ter:NoToken", f"no preset with token {token!r}")
        self.state.goto(token)
        return "<tptz:GotoPresetResponse/>"

    def op_GetStatus(self, request: ET.Element) -> str:
        self._profile(request)
        shown, moving = self.state.view()
        move = "MOVING" if moving else "IDLE"
        where = self.state.presets.get(shown) if shown else self.state.presets[self.state.current]
        utc = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return (
            f"<tptz:GetStatusResponse><tptz:PTZStatus><tt:Position>{_position(where)}</tt:Position>"
            f"<tt:MoveStatus><tt:PanTilt>{move}</tt:PanTilt><tt:Zoom>IDLE</tt:Zoom></tt:MoveStatus>"
            f"<tt:UtcTime>{utc}</tt:UtcTime></tptz:PTZStatus></tptz:GetStatusResponse>"
        )
