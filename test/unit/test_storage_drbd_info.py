"""Parsing /proc/drbd, drbdsetup status --json and drbdsetup show samples."""

import os

import pytest

from corral import errors
from corral.storage import base, drbd_info

DATA = os.path.join(os.path.dirname(__file__), "..", "data", "storage")


def load(name):
    with open(os.path.join(DATA, name)) as fh:
        return fh.read()


def test_version_lines():
    v = drbd_info.parse_version("version: 8.4.11 (api:1/proto:86-101)")
    assert (v.major, v.minor, v.point, v.api, v.proto, v.proto2) == (8, 4, 11, 1, 86, 101)
    v = drbd_info.parse_version("version: 8.0.12 (api:86/proto:86)")
    assert (v.major, v.minor, v.proto2) == (8, 0, None)
    v = drbd_info.parse_version("version: 8.3.7.1-rc2 (api:88/proto:86-92)")
    assert str(v) == "8.3.7"
    with pytest.raises(errors.BlockDeviceError, match="Cannot parse DRBD version"):
        drbd_info.parse_version("srcversion: 123")


def test_drbd9_kernel_rejected():
    proc = drbd_info.parse_proc_drbd(load("proc_drbd_9.txt"))
    assert proc.minors == {}
    msg = drbd_info.check_supported(proc.version)
    assert msg.startswith("DRBD 9.1.16 kernel module loaded; Corral needs the DRBD 8.x")
    assert drbd_info.check_supported(drbd_info.parse_version(
        "version: 8.4.11 (api:1/proto:86-101)")) is None


def test_84_connected():
    proc = drbd_info.parse_proc_drbd(load("proc_drbd_84_connected.txt"))
    assert proc.used_minors() == [0, 1]
    m0 = proc.minors[0]
    assert (m0.cstatus, m0.lrole, m0.rrole, m0.ldisk, m0.rdisk) == \
        ("Connected", "Primary", "Secondary", "UpToDate", "UpToDate")
    assert m0.is_connected and m0.is_primary and not proc.minors[1].is_primary
    assert m0.sync_status() == base.SyncStatus(None, None, False, "okay")


def test_84_syncing():
    proc = drbd_info.parse_proc_drbd(load("proc_drbd_84_syncing.txt"))
    src, tgt, bitmap, paused = (proc.minors[i] for i in range(4))
    assert src.is_in_resync and src.sync_percent == 68.5 and src.est_time == 67
    assert src.sync_status() == base.SyncStatus(68.5, 67, True, "syncing")
    assert tgt.sync_percent == 0.1 and tgt.est_time == 3723
    assert tgt.sync_status().is_degraded
    # resync state without a percentage line reports 0
    assert bitmap.sync_status() == base.SyncStatus(0.0, None, True, "syncing")
    assert paused.cstatus == "PausedSyncS" and paused.sync_status().sync_percent == 10.0


def test_84_mixed_states():
    proc = drbd_info.parse_proc_drbd(load("proc_drbd_84_mixed.txt"))
    assert proc.version.minor == 4 and proc.version.point == 3
    assert proc.used_minors() == [0, 1, 2, 4, 5]
    standalone, wfconn, diskless, free, diskless_conn, outdated = \
        (proc.minors[i] for i in range(6))
    assert standalone.sync_status() == base.SyncStatus(None, None, True, "faulty")
    assert wfconn.is_wfconn and wfconn.sync_status() == base.SyncStatus(None, None, True,
                                                                         "okay")
    assert diskless.is_diskless and diskless.sync_status().ldisk_status == "faulty"
    assert not free.is_in_use and free.cstatus == "Unconfigured"
    assert diskless_conn.sync_status() == base.SyncStatus(None, None, True, "faulty")
    assert outdated.sync_status() == base.SyncStatus(None, None, True, "unknown")


def test_83_st_form():
    proc = drbd_info.parse_proc_drbd(load("proc_drbd_83.txt"))
    assert (proc.version.major, proc.version.minor) == (8, 3)
    assert proc.used_minors() == [0, 1, 4]
    m0, m1 = proc.minors[0], proc.minors[1]
    assert (m0.lrole, m0.rrole) == ("Primary", "Secondary")
    assert m1.cstatus == "SyncTarget" and m1.sync_percent == 17.1 and m1.est_time == 19
    assert m1.sync_status().ldisk_status == "syncing"
    assert proc.minors[4].is_wfconn


def test_80_with_extra_continuation_lines():
    proc = drbd_info.parse_proc_drbd(load("proc_drbd_80.txt"))
    assert proc.version.minor == 0
    assert proc.minors[0].is_connected and proc.minors[0].ldisk == "UpToDate"
    assert not proc.minors[1].is_in_use


def test_bad_proc_drbd():
    with pytest.raises(errors.BlockDeviceError, match="empty"):
        drbd_info.parse_proc_drbd("")


def test_status_json_connected():
    st = drbd_info.parse_status_json(load("drbdsetup_status_connected.json"))
    m = st[0]
    assert (m.cstatus, m.lrole, m.rrole, m.ldisk, m.rdisk) == \
        ("Connected", "Primary", "Secondary", "UpToDate", "UpToDate")
    assert m.sync_status() == base.SyncStatus(None, None, False, "okay")


def test_status_json_syncing():
    m = drbd_info.parse_status_json(load("drbdsetup_status_syncing.json"))[1]
    assert m.cstatus == "SyncTarget" and m.sync_percent == 34.19
    # 276000 sectors in 3 s = 46000 KiB/s; 1380160 KiB out of sync -> 30 s
    assert m.est_time == 30
    assert m.sync_status() == base.SyncStatus(34.19, 30, True, "syncing")


def test_status_json_standalone_and_connecting():
    st = drbd_info.parse_status_json(load("drbdsetup_status_standalone.json"))
    assert st[2].cstatus == "StandAlone" and st[2].sync_status().ldisk_status == "faulty"
    assert st[3].cstatus == "WFConnection" and st[3].rrole == "Unknown"
    assert st[3].sync_status() == base.SyncStatus(None, None, True, "okay")
    with pytest.raises(errors.BlockDeviceError, match="JSON"):
        drbd_info.parse_status_json("not json")


def test_show_84():
    info = drbd_info.parse_show(load("drbdsetup_show_84.txt"))
    assert info.local_dev == "/dev/xenvg/0b7a.disk0_data"
    assert info.meta_dev == "/dev/xenvg/0b7a.disk0_meta"
    assert info.local_addr == ("192.0.2.1", 11000)
    assert info.remote_addr == ("192.0.2.2", 11000)


def test_show_84_standalone():
    info = drbd_info.parse_show(load("drbdsetup_show_84_standalone.txt"))
    assert info.local_dev == "/dev/xenvg/0b7a.disk0_data"
    assert info.local_addr is None and info.remote_addr is None


def test_show_83():
    info = drbd_info.parse_show(load("drbdsetup_show_83.txt"))
    assert info.local_dev == "/dev/xenvg/0b7a.disk0_data"
    assert (info.meta_dev, info.meta_index) == ("/dev/xenvg/0b7a.disk0_meta", "0")
    assert info.local_addr == ("192.0.2.1", 11000)
    assert info.remote_addr == ("192.0.2.2", 11000)


def test_show_ipv6_and_internal():
    text = ('resource r { _remote_host { address ipv6 [fd00::2]:11000; }\n'
            '_this_host { address ipv6 [fd00::1]:11000; volume 0 { device minor 1;\n'
            'disk "/dev/sdb"; meta-disk internal; } } }')
    info = drbd_info.parse_show(text)
    assert info.remote_addr == ("fd00::2", 11000) and info.local_addr == ("fd00::1", 11000)
    assert info.meta_dev is None and info.meta_index == "internal"
