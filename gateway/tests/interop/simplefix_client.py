#!/usr/bin/env python3
"""A FIX initiator built on the third-party `simplefix` codec (PyPI), independent of the exchange's
Rust codec, that runs a scripted order-entry scenario against a live acceptor and checks every
answer.

Usage:
    simplefix_client.py --host 127.0.0.1 --port 9878 --sender CLIENT1 --target EXCH \
        --version FIX.4.4 [--symbol ACME] [--heartbeat 30] [--reset] [--timeout 10]

What the acceptor must be configured with (the defaults match gateway/tests/interop.rs):
  * a session whose SenderCompID is --target and TargetCompID is --sender, BeginString --version,
    no password, HeartBtInt --heartbeat accepted, and fresh sequence numbers (both sides start at
    1; pass --reset to log on with ResetSeqNumFlag=Y instead);
  * instrument --symbol (default ACME) priced in 0.05 ticks or finer, lot size 1, no price band
    in the way of 101.00..101.25, and nothing else resting on it at or better than 101.25;
  * no self-trade prevention for the session's own orders: the crossing sell comes from the same
    session as the resting buy;
  * OrderCancelRequest (F) and OrderCancelReplaceRequest (G) supported; QuoteRequest (R) not.

Scenario: Logon (HeartBtInt) -> Logon; TestRequest -> Heartbeat with the TestReqID; limit buy 10
@ 101.25 -> ExecutionReport New; sell 4 @ 101.00 -> New, then fills for both orders at 101.25
(ExecType F in 4.4, 2/1 in 4.2; OrdStatus, CumQty, LeavesQty, AvgPx, LastQty, LastPx checked);
cancel of an unknown order -> OrderCancelReject (434=1, 102=1); cancel/replace of the buy to 20 @
101.00 -> Replaced; cancel of it -> Canceled; QuoteRequest -> BusinessMessageReject (380=3);
Logout -> Logout, then the acceptor closes the connection.

Every incoming message is framed by this script, which checks its BodyLength and CheckSum itself,
then parsed by simplefix; its header (BeginString, CompIDs, SendingTime) and MsgSeqNum continuity
are checked, and the tags each message type requires in the session's FIX version must be there.
Prices are compared as decimals, never floats.

Exit status: 0 when everything matched; 1 at the first deviation (the reason on stderr);
2 when the acceptor cannot be reached or simplefix is missing.
"""

import argparse
import re
import socket
import sys
import time
from decimal import Decimal, InvalidOperation

try:
    import simplefix
except ImportError:
    print(
        "simplefix_client: the simplefix package is missing; run scripts/setup.sh "
        "(it installs simplefix into .tools/venv)",
        file=sys.stderr,
    )
    sys.exit(2)

SOH = b"\x01"
# Header tags every message carries, in both versions.
HEADER_REQUIRED = (8, 9, 35, 49, 56, 34, 52)
# Body tags required by the FIX dictionaries (4.2 / 4.4) for the messages the scenario receives.
BODY_REQUIRED = {
    "FIX.4.2": {
        b"A": (98, 108),
        b"0": (),
        b"5": (),
        b"8": (37, 17, 20, 150, 39, 55, 54, 151, 14, 6),
        b"9": (37, 11, 41, 39, 434),
        b"j": (372, 380),
    },
    "FIX.4.4": {
        b"A": (98, 108),
        b"0": (),
        b"5": (),
        b"8": (37, 17, 150, 39, 55, 54, 151, 14, 6),
        b"9": (37, 11, 41, 39, 434),
        b"j": (372, 380),
    },
}
NAMES = {
    b"0": "Heartbeat",
    b"1": "TestRequest",
    b"2": "ResendRequest",
    b"3": "Reject",
    b"4": "SequenceReset",
    b"5": "Logout",
    b"8": "ExecutionReport",
    b"9": "OrderCancelReject",
    b"A": "Logon",
    b"j": "BusinessMessageReject",
}
UTC_TIMESTAMP = re.compile(rb"^\d{8}-\d{2}:\d{2}:\d{2}(\.\d{1,9})?$")


class Deviation(Exception):
    """The acceptor did something the scenario does not allow."""


def show(raw):
    return raw.replace(SOH, b"|").decode("ascii", "replace")


def name_of(msg_type):
    return NAMES.get(msg_type, "MsgType " + msg_type.decode("ascii", "replace"))


class Session:
    """One FIX session over a socket: simplefix encodes what we send; incoming bytes are framed
    and checked here, then parsed by simplefix."""

    def __init__(self, sock, version, sender, target, timeout_s):
        self.sock = sock
        self.version = version
        self.sender = sender
        self.target = target
        self.timeout_s = timeout_s
        self.next_out = 1
        self.next_in = 1
        self.buffer = b""

    def send(self, msg_type, fields):
        message = simplefix.FixMessage()
        message.append_pair(8, self.version, header=True)
        message.append_pair(35, msg_type, header=True)
        message.append_pair(49, self.sender, header=True)
        message.append_pair(56, self.target, header=True)
        sequence = self.next_out
        message.append_pair(34, sequence, header=True)
        message.append_utc_timestamp(52, precision=3, header=True)
        for tag, value in fields:
            message.append_pair(tag, value)
        raw = message.encode()
        self.sock.sendall(raw)
        self.next_out += 1
        print("sent     " + show(raw))
        return sequence

    def _take_frame(self):
        """The next complete frame from the buffer (BodyLength and CheckSum verified), or None."""
        buf = self.buffer
        if len(buf) < 2:
            return None
        if not buf.startswith(b"8="):
            raise Deviation("incoming bytes do not start with BeginString: " + show(buf[:60]))
        first = buf.find(SOH)
        if first < 0:
            return None
        begin_string = buf[2:first].decode("ascii", "replace")
        if begin_string != self.version:
            raise Deviation(f"BeginString {begin_string}, expected {self.version}")
        second = buf.find(SOH, first + 1)
        if second < 0:
            return None
        length_field = buf[first + 1:second]
        if not length_field.startswith(b"9=") or not length_field[2:].isdigit():
            raise Deviation("second field is not a numeric BodyLength: " + show(buf[:60]))
        body_length = int(length_field[2:])
        body_end = second + 1 + body_length
        frame_end = body_end + 7  # "10=NNN" and SOH
        if len(buf) < frame_end:
            return None
        trailer = buf[body_end:frame_end]
        if not (trailer.startswith(b"10=") and trailer[3:6].isdigit() and trailer[6:] == SOH):
            raise Deviation(
                f"BodyLength {body_length} does not point at the CheckSum field: "
                + show(buf[:frame_end])
            )
        declared = int(trailer[3:6])
        computed = sum(buf[:body_end]) % 256
        if declared != computed:
            raise Deviation(
                f"CheckSum {declared:03} but the bytes sum to {computed:03}: "
                + show(buf[:frame_end])
            )
        self.buffer = buf[frame_end:]
        return buf[:frame_end]

    def receive(self):
        """The next incoming message, with its header and MsgSeqNum checked."""
        deadline = time.monotonic() + self.timeout_s
        frame = self._take_frame()
        while frame is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Deviation(f"no complete message within {self.timeout_s} s")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not data:
                raise Deviation("the acceptor closed the connection while a message was expected")
            self.buffer += data
            frame = self._take_frame()
        print("received " + show(frame))
        parser = simplefix.FixParser()
        parser.append_buffer(frame)
        message = parser.get_message()
        if message is None:
            raise Deviation("simplefix found no message in " + show(frame))
        self._check_header(message, frame)
        return message

    def _check_header(self, message, frame):
        for tag in HEADER_REQUIRED:
            if message.get(tag) is None:
                raise Deviation(f"header tag {tag} missing: " + show(frame))
        fields = [int(tag) for tag, _ in message.pairs]
        if fields[:3] != [8, 9, 35] or fields[-1] != 10:
            raise Deviation("8, 9, 35 must come first and 10 last: " + show(frame))
        if message.get(49) != self.target.encode() or message.get(56) != self.sender.encode():
            raise Deviation(
                f"CompIDs 49={message.get(49)} 56={message.get(56)}, expected "
                f"49={self.target} 56={self.sender}"
            )
        if not UTC_TIMESTAMP.match(message.get(52)):
            raise Deviation("SendingTime is not a UTCTimestamp: " + show(frame))
        sequence_text = message.get(34)
        if not sequence_text.isdigit():
            raise Deviation("MsgSeqNum is not a number: " + show(frame))
        sequence = int(sequence_text)
        if sequence != self.next_in:
            raise Deviation(f"MsgSeqNum {sequence}, expected {self.next_in} (a gap or a repeat)")
        if message.get(43) == b"Y":
            raise Deviation("unexpected PossDupFlag=Y: " + show(frame))
        self.next_in = sequence + 1
        msg_type = message.get(35)
        required = BODY_REQUIRED[self.version].get(msg_type, ())
        missing = [tag for tag in required if message.get(tag) is None]
        if missing:
            raise Deviation(
                f"{name_of(msg_type)} lacks required tag(s) {missing} for {self.version}: "
                + show(frame)
            )

    def expect(self, msg_type):
        """The next message of `msg_type`; unsolicited Heartbeats are skipped and TestRequests
        answered on the way."""
        while True:
            message = self.receive()
            received = message.get(35)
            if received == msg_type:
                return message
            if received == b"0":
                continue
            if received == b"1":
                self.send("0", [(112, message.get(112).decode())])
                continue
            text = message.get(58)
            raise Deviation(
                f"expected {name_of(msg_type)}, received {name_of(received)}"
                + (f" ({text.decode('ascii', 'replace')})" if text else "")
            )

    def expect_close(self):
        deadline = time.monotonic() + self.timeout_s
        while True:
            if self.buffer:
                raise Deviation("bytes after the Logout: " + show(self.buffer))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Deviation(f"the acceptor kept the connection open {self.timeout_s} s after Logout")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                return
            if not data:
                return
            self.buffer += data


def text_of(message, tag):
    value = message.get(tag)
    return None if value is None else value.decode("ascii", "replace")


def check(message, what, expected):
    """`expected`: tag -> string (exact) or Decimal (numeric equality)."""
    for tag, want in expected.items():
        have = text_of(message, tag)
        if have is None:
            raise Deviation(f"{what}: tag {tag} missing, expected {want}")
        if isinstance(want, Decimal):
            try:
                equal = Decimal(have) == want
            except InvalidOperation:
                equal = False
        else:
            equal = have == want
        if not equal:
            raise Deviation(f"{what}: tag {tag} is {have!r}, expected {want!r}")


def transact_time():
    return time.strftime("%Y%m%d-%H:%M:%S.000", time.gmtime())


def run(args):
    version = args.version
    fix42 = version == "FIX.4.2"
    run_id = args.run_id or str(time.time_ns() % 10**12)
    symbol = args.symbol
    try:
        sock = socket.create_connection((args.host, args.port), timeout=args.timeout)
    except OSError as error:
        print(f"simplefix_client: cannot connect to {args.host}:{args.port}: {error}", file=sys.stderr)
        return 2
    session = Session(sock, version, args.sender, args.target, args.timeout)
    try:
        # Logon.
        logon = [(98, 0), (108, args.heartbeat)]
        if args.reset:
            logon.append((141, "Y"))
        session.send("A", logon)
        answer = session.expect(b"A")
        check(answer, "Logon", {98: "0", 108: str(args.heartbeat)})
        if args.reset:
            check(answer, "Logon", {141: "Y"})
        print("ok: Logon")

        # TestRequest -> Heartbeat with the TestReqID.
        test_req_id = "TR-" + run_id
        session.send("1", [(112, test_req_id)])
        check(session.expect(b"0"), "Heartbeat", {112: test_req_id})
        print("ok: TestRequest answered")

        def order_fields(cl_ord_id, side, quantity, price):
            return [
                (11, cl_ord_id),
                (21, 1),
                (55, symbol),
                (54, side),
                (60, transact_time()),
                (38, quantity),
                (40, 2),
                (44, price),
                (59, 0),
            ]

        def report(what):
            message = session.expect(b"8")
            if fix42:
                check(message, what, {20: "0"})
            return message

        # A limit buy rests.
        buy = "B-" + run_id
        session.send("D", order_fields(buy, 1, 10, "101.25"))
        check(
            report("buy New"),
            "buy New",
            {
                11: buy, 150: "0", 39: "0", 54: "1", 55: symbol, 38: Decimal(10),
                44: Decimal("101.25"), 14: Decimal(0), 151: Decimal(10), 6: Decimal(0),
            },
        )
        print("ok: limit buy New")

        # A crossing sell from the same session trades at the resting price.
        sell = "S-" + run_id
        session.send("D", order_fields(sell, 2, 4, "101.00"))
        fill = "2" if fix42 else "F"
        partial = "1" if fix42 else "F"
        expected = {
            (sell, "0"): {39: "0", 54: "2", 14: Decimal(0), 151: Decimal(4), 6: Decimal(0)},
            (sell, fill): {
                39: "2", 54: "2", 32: Decimal(4), 31: Decimal("101.25"), 14: Decimal(4),
                151: Decimal(0), 6: Decimal("101.25"),
            },
            (buy, partial): {
                39: "1", 54: "1", 32: Decimal(4), 31: Decimal("101.25"), 14: Decimal(4),
                151: Decimal(6), 6: Decimal("101.25"),
            },
        }
        while expected:
            message = report("crossing reports")
            key = (text_of(message, 11), text_of(message, 150))
            if key not in expected:
                raise Deviation(
                    f"unexpected ExecutionReport ClOrdID={key[0]} ExecType={key[1]}; still "
                    f"expected {sorted(expected)}"
                )
            check(message, f"report {key}", expected.pop(key))
        print("ok: crossing sell filled against the buy")

        # Cancel of an order that does not exist.
        unknown = "NOPE-" + run_id
        cancel_unknown = "X-" + run_id
        session.send(
            "F",
            [(41, unknown), (11, cancel_unknown), (55, symbol), (54, 1), (60, transact_time()),
             (38, 10)],
        )
        check(
            session.expect(b"9"),
            "OrderCancelReject",
            {11: cancel_unknown, 41: unknown, 434: "1", 102: "1"},
        )
        print("ok: cancel of an unknown order rejected")

        # Cancel/replace of the buy: 20 (total) at 101.00.
        replace = "R-" + run_id
        fields = [(41, buy)] + order_fields(replace, 1, 20, "101.00")
        session.send("G", fields)
        check(
            report("Replaced"),
            "Replaced",
            {
                11: replace, 41: buy, 150: "5", 39: "1", 38: Decimal(20), 44: Decimal("101.00"),
                14: Decimal(4), 151: Decimal(16), 6: Decimal("101.25"),
            },
        )
        print("ok: cancel/replace")

        # Cancel of the replaced order.
        cancel = "C-" + run_id
        session.send(
            "F",
            [(41, replace), (11, cancel), (55, symbol), (54, 1), (60, transact_time()), (38, 20)],
        )
        check(
            report("Canceled"),
            "Canceled",
            {11: cancel, 41: replace, 150: "4", 39: "4", 14: Decimal(4), 151: Decimal(0)},
        )
        print("ok: cancel")

        # An unsupported MsgType.
        quote_sequence = session.send("R", [(131, "Q-" + run_id), (146, 1), (55, symbol)])
        check(
            session.expect(b"j"),
            "BusinessMessageReject",
            {372: "R", 380: "3", 45: str(quote_sequence)},
        )
        print("ok: unsupported MsgType rejected")

        # Logout handshake, then the acceptor closes.
        session.send("5", [])
        session.expect(b"5")
        session.expect_close()
        print("ok: Logout")
    except Deviation as deviation:
        print(f"simplefix_client ({version}): DEVIATION: {deviation}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"simplefix_client ({version}): connection error: {error}", file=sys.stderr)
        return 1
    finally:
        sock.close()
    print(f"simplefix_client ({version}): all checks passed")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", required=True, type=int)
    parser.add_argument("--sender", required=True, help="our SenderCompID")
    parser.add_argument("--target", required=True, help="the acceptor's CompID")
    parser.add_argument("--version", required=True, choices=["FIX.4.2", "FIX.4.4"])
    parser.add_argument("--symbol", default="ACME")
    parser.add_argument("--heartbeat", type=int, default=30, help="HeartBtInt in seconds")
    parser.add_argument("--reset", action="store_true", help="log on with ResetSeqNumFlag=Y")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each answer")
    parser.add_argument("--run-id", default=None, help="suffix of the ClOrdIDs (default: from the clock)")
    sys.exit(run(parser.parse_args()))


if __name__ == "__main__":
    main()
