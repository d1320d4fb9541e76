#!/usr/bin/python3
"""A Modbus TCP device for the tests, built on pymodbus (Debian python3-pymodbus),
not on our code. Addresses start at 0 (zero_mode).

    modbus-server.py PORT            Modbus TCP on 127.0.0.1:PORT
    modbus-server.py --rtu DEVICE    Modbus RTU on a serial device (a pty of socat in the tests), 19200 8N1

Control lines on stdin, one answer line on stdout each:
    set di|co|hr|ir ADDRESS VALUE   -> ok
    get di|co|hr|ir ADDRESS         -> value VALUE
    stall 0|1                       -> ok   (1: accept requests but never answer)
    quit
It prints "listening PORT" once the port is open.
"""
import asyncio
import sys
import threading

from pymodbus.datastore import ModbusSequentialDataBlock, ModbusServerContext, ModbusSlaveContext
from pymodbus.server import StartAsyncSerialServer, StartAsyncTcpServer
from pymodbus.transaction import ModbusRtuFramer

FC = {"co": 1, "di": 2, "hr": 3, "ir": 4}

RTU = sys.argv[1] == "--rtu"
PORT = 0 if RTU else int(sys.argv[1])
DEVICE = sys.argv[2] if RTU else None
store = ModbusSlaveContext(
    di=ModbusSequentialDataBlock(0, [0] * 1000),
    co=ModbusSequentialDataBlock(0, [0] * 1000),
    hr=ModbusSequentialDataBlock(0, [0] * 1000),
    ir=ModbusSequentialDataBlock(0, [0] * 1000),
    zero_mode=True,
)
context = ModbusServerContext(slaves=store, single=True)
stalled = threading.Event()

# a stalled device: every read and write blocks (requests are accepted, never answered)
_get, _set = store.getValues, store.setValues


def _blocking(fn):
    def wrapper(*a, **k):
        while stalled.is_set():
            threading.Event().wait(0.05)
        return fn(*a, **k)
    return wrapper


store.getValues = _blocking(_get)
store.setValues = _blocking(_set)


def control():
    for raw in sys.stdin:
        parts = raw.split()
        try:
            if not parts:
                continue
            if parts[0] == "quit":
                break
            if parts[0] == "set":
                _set(FC[parts[1]], int(parts[2]), [int(parts[3])])
                print("ok", flush=True)
            elif parts[0] == "get":
                print("value %d" % int(_get(FC[parts[1]], int(parts[2]), 1)[0]), flush=True)
            elif parts[0] == "stall":
                if parts[1] == "1":
                    stalled.set()
                else:
                    stalled.clear()
                print("ok", flush=True)
            else:
                print("error unknown command", flush=True)
        except Exception as e:  # pylint: disable=broad-except
            print("error %s" % e, flush=True)
    import os
    os._exit(0)


async def main():
    threading.Thread(target=control, daemon=True).start()
    loop = asyncio.get_running_loop()

    async def announce():
        # StartAsyncTcpServer does not return while serving: poll the port
        while True:
            try:
                r, w = await asyncio.open_connection("127.0.0.1", PORT)
                w.close()
                print("listening %d" % PORT, flush=True)
                return
            except OSError:
                await asyncio.sleep(0.05)

    if RTU:
        async def announce_rtu():
            await asyncio.sleep(0.3)
            print("listening %s" % DEVICE, flush=True)

        loop.create_task(announce_rtu())
        await StartAsyncSerialServer(context=context, framer=ModbusRtuFramer, port=DEVICE, baudrate=19200,
                                     bytesize=8, parity="N", stopbits=1, timeout=0.005)
        return
    loop.create_task(announce())
    # reuse the address: a restart on the same port must not wait for TIME_WAIT
    # (pymodbus logs a failed bind at debug level only and then serves nothing)
    await StartAsyncTcpServer(context=context, address=("127.0.0.1", PORT), allow_reuse_address=True)


if __name__ == "__main__":
    asyncio.run(main())
