"""Opening lab devices by address: serial://, bare paths, socket://, fallback, auto, scan."""

import os
import tty
import warnings

import pytest
import torch
from serial.tools import list_ports_common

import phys
from phys.cli import main
from phys.devices.emulator import Emulator
from phys.devices.ports import FallbackWarning, open_auto
from phys.devices.serial import SerialDevice, SerialDeviceError

BACKEND = dict(n_in=4, n_out=3, seed=1)


@pytest.fixture(scope="module")
def lab():
    with Emulator.serving("cavity", **BACKEND) as emulator:
        yield emulator


@pytest.fixture
def silent_port():
    """A pty nobody answers on."""
    master, slave = os.openpty()
    tty.setraw(slave)
    yield os.ttyname(slave)
    os.close(master)
    os.close(slave)


def test_every_address_form_opens_the_device(lab):
    for spec in (lab.port, f"serial://{lab.port}"):
        with phys.open(spec, baudrate=1_000_000) as dev:
            assert isinstance(dev, SerialDevice) and dev.info.name == "lab-cavity"
            assert dev.info.extra["baudrate"] == 1_000_000
    with Emulator.serving("cavity", tcp=0, **BACKEND) as tcp:
        with phys.open(tcp.port) as dev:
            assert dev.query(torch.zeros(4)).shape == (3,)


def test_fallback_when_the_port_is_missing():
    with pytest.warns(FallbackWarning, match="cannot open the port.*'cavity' simulator"):
        dev = phys.open("serial:///dev/phys-missing", fallback="cavity", n_in=5, n_out=2,
                        fallback_options={"n_scatterers": 32})
    assert (dev.info.name, dev.info.n_in, dev.info.n_out) == ("cavity", 5, 2)
    assert dev.info.extra["n_scatterers"] == 32
    with pytest.raises(SerialDeviceError, match="cannot open"):  # no fallback: an error
        phys.open("/dev/phys-missing")


def test_fallback_when_the_port_does_not_answer(silent_port):
    with pytest.warns(FallbackWarning, match="no valid answer to HELLO"):
        dev = phys.open(silent_port, fallback="oscillators", retries=1, latency=0.02,
                        n_out=2)
    assert dev.info.name == "oscillators" and dev.info.n_out == 2


def test_sizes_and_seed_shape_only_the_fallback(lab):
    # a layer asks for its own sizes; a connected device keeps the ones it has
    with phys.open(lab.port, n_in=74, n_out=64, seed=5, fallback="cavity") as dev:
        assert (dev.info.n_in, dev.info.n_out) == (4, 3)


def test_auto_probes_ports_in_order(lab, silent_port):
    with open_auto(ports=[silent_port, lab.port], latency=0.02) as dev:
        assert dev.port_name == lab.port
    with pytest.warns(FallbackWarning, match="no serial device answered"):
        dev = phys.open("auto", ports=[silent_port], latency=0.02, n_in=3)
    assert dev.info.name == "cavity" and dev.info.n_in == 3
    with pytest.raises(SerialDeviceError, match="no USB serial ports"):
        phys.open("auto", ports=[], fallback=None)


def test_auto_uses_list_ports_usb_devices(lab, monkeypatch):
    # ptys are not enumerated by the OS; present the emulator's as a USB serial port
    usb = list_ports_common.ListPortInfo(lab.port, skip_link_detection=True)
    usb.vid, usb.pid = 0x2E8A, 0x0005
    legacy = list_ports_common.ListPortInfo("/dev/phys-ttyS0", skip_link_detection=True)
    monkeypatch.setattr("serial.tools.list_ports.comports", lambda: [legacy, usb])
    with phys.open("auto") as dev:
        assert dev.port_name == lab.port
    monkeypatch.setattr("serial.tools.list_ports.comports", lambda: [legacy])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dev = phys.open("auto")
    assert dev.info.name == "cavity" and caught[0].category is FallbackWarning


def test_devices_scan_lists_what_answers(lab, silent_port, capsys):
    assert main(["devices", "--scan", "--ports", lab.port, silent_port]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{lab.port}  lab-cavity") and "n_in=4 n_out=3" in out[0]
    assert out[1].startswith(f"{silent_port}  no lab device") and "HELLO" in out[1]


def test_info_declares_one_recoverable_instance_and_the_settable_params(lab):
    with SerialDevice(lab.port) as dev:
        info = dev.info
    assert info.exclusive and info.recoverable
    assert [(p.name, p.shape, p.index) for p in info.params] == [
        ("gain", (info.n_out,), 0), ("offset", (info.n_out,), 1),
        ("phase", (64,), 2)]  # the emulated cavity's own parameter after the host's
    assert info.param("gain").min < 0 < info.param("gain").max
