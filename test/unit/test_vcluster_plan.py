"""tools/vcluster pure parts: names, addresses, hosts files, sshd config, state round trip."""

import os

import pytest

from corral.tools import vcluster


def test_plan_names_addresses_and_roots(tmp_path):
    base = str(tmp_path / "vc1")
    vc = vcluster._plan(base, 3, "fake", None)
    assert vc.vcname == "vc1" and vc.cluster_name == "cluster.vc1.test"
    assert [n.name for n in vc.nodes] == ["node%d.vc1.test" % i for i in (1, 2, 3)]
    assert [n.ip.rsplit(".", 1)[1] for n in vc.nodes] == ["10", "11", "12"]
    assert vc.master_ip == vc.subnet + ".250"
    assert all(n.root == os.path.join(base, "n%d" % n.index) for n in vc.nodes)
    assert all(len(n.hub_link) <= 15 for n in vc.nodes)  # interface name limit
    assert len({n.ns for n in vc.nodes} | {vc.hub_ns}) == 4


def test_identity_differs_per_base_dir():
    a = vcluster._identity("/tmp/vc1")
    b = vcluster._identity("/tmp/vc2")
    assert a[1] != b[1] and a[2] != b[2]
    assert vcluster._identity("/tmp/vc1") == a


def test_node_lookup_by_name_short_index_namespace(tmp_path):
    vc = vcluster._plan(str(tmp_path / "x"), 2, "fake", None)
    node = vc.nodes[1]
    for ident in (node.name, "node2", "2", node.ns):
        assert vc.node(ident) is node
    with pytest.raises(vcluster.VClusterError, match="No node 'node9'"):
        vc.node("node9")


def test_state_round_trip(tmp_path):
    base = tmp_path / "vc3"
    base.mkdir()
    vc = vcluster._plan(str(base), 2, "kvm", None)
    vc.save()
    again = vcluster.load(str(base))
    assert again == vc
    with pytest.raises(vcluster.VClusterError, match="No vcluster"):
        vcluster.load(str(tmp_path / "nothing"))


def test_shared_segment_allocation_and_hosts(tmp_path):
    base1, base2 = tmp_path / "one", tmp_path / "two"
    base1.mkdir()
    base2.mkdir()
    vc1 = vcluster._plan(str(base1), 2, "fake", None)
    vc1.save()
    vc2 = vcluster._plan(str(base2), 1, "fake", vc1)
    assert vc2.subnet == vc1.subnet and vc2.hub_ns == vc1.hub_ns
    assert vc2.nodes[0].ip == vc1.subnet + ".12" and vc2.master_ip != vc1.master_ip
    vc2.save()
    vcluster._set_segment(str(base1), [str(base1), str(base2)])
    members = vcluster._segment_members(vc1)
    text = vcluster._hosts_text(vc1, members)
    assert "%s node1.one.test node1\n" % vc1.nodes[0].ip in text
    assert "%s node1.two.test\n" % vc2.nodes[0].ip in text  # no short alias: not ours
    assert "%s cluster.two.test" % vc2.master_ip in text


def test_sshd_config_sets_node_environment(tmp_path):
    vc = vcluster._plan(str(tmp_path / "vc4"), 1, "fake", None)
    node = vc.nodes[0]
    text = vcluster._sshd_config(vc, node)
    assert "ListenAddress %s\n" % node.ip in text
    assert "CORRAL_ROOT=%s " % node.root in text and "CORRAL_HOSTNAME=%s " % node.name in text
    assert "AuthorizedKeysFile %s/ssh/authorized_keys" % node.root in text
    assert "UsePAM no" in text and "StrictModes no" in text


def test_enter_argv_runs_in_namespace_with_bind(tmp_path):
    vc = vcluster._plan(str(tmp_path / "vc5"), 1, "fake", None)
    argv = vcluster.enter_argv(vc, vc.nodes[0], ["gnt-node", "list"])
    assert argv[:4] == ["ip", "netns", "exec", vc.nodes[0].ns]
    assert "%s:%s" % (os.path.join(vc.nodes[0].root, "file"), vc.file_dir) in argv
    assert argv[-3:] == ["--", "gnt-node", "list"]
    env = vc.node_env(vc.nodes[0])
    assert env["CORRAL_ROOT"] == vc.nodes[0].root and env["CORRAL_HOSTNAME"] == vc.nodes[0].name


def test_current_master_is_the_majority_view(tmp_path):
    vc = vcluster._plan(str(tmp_path / "vc6"), 3, "fake", None)
    for node, master in zip(vc.nodes, ["node1.vc6.test", "node2.vc6.test", "node2.vc6.test"]):
        d = os.path.join(node.root, "var", "lib", "corral")
        os.makedirs(d)
        with open(os.path.join(d, "ssconf_master_node"), "w") as fh:
            fh.write(master + "\n")
    assert vcluster.current_master(vc).name == "node2.vc6.test"


# ---- --hypervisor libvirt / xen-pvm ---------------------------------------------------------

def test_libvirt_node_environment_names_its_own_daemon(tmp_path):
    from corral.hypervisor.libvirt import driver
    from corral.tools import vcluster_libvirt as lvsetup
    assert lvsetup.URI_ENV == driver.URI_ENV
    vc = vcluster._plan(str(tmp_path / "vl1"), 2, "libvirt", None)
    node = vc.nodes[1]
    uri = vc.node_env(node)[driver.URI_ENV]
    assert uri == "qemu+unix:///system?socket=%s/libvirt/run/libvirt-sock" % node.root
    # ssh sessions (gnt-node add starting noded, daemon restarts) get it too
    assert " CORRAL_LIBVIRT_URI=%s" % uri in vcluster._sshd_config(vc, node)
    kvm = vcluster._plan(str(tmp_path / "vk1"), 1, "kvm", None)
    assert driver.URI_ENV not in kvm.node_env(kvm.nodes[0])
    assert "LIBVIRT" not in vcluster._sshd_config(kvm, kvm.nodes[0])


def test_libvirt_daemon_config_per_node():
    from corral.tools import vcluster_libvirt as lvsetup
    daemon = lvsetup.libvirtd_conf("10.1.2.3")
    for line in ("listen_tls = 0", "listen_tcp = 1", 'listen_addr = "10.1.2.3"',
                 'auth_tcp = "none"', "keepalive_count = 12"):
        assert line + "\n" in daemon
    qemu = lvsetup.qemu_conf("10.1.2.3")
    for line in ('user = "root"', 'security_driver = "none"', "dynamic_ownership = 0",
                 'migration_address = "10.1.2.3"', 'migration_host = "10.1.2.3"',
                 "keepalive_interval = 10", "keepalive_count = 12"):
        assert line + "\n" in qemu


def test_libvirtd_runs_behind_the_node_mounts(tmp_path):
    from corral.tools import vcluster_libvirt as lvsetup
    lvdir = str(tmp_path / "lv")
    argv = lvsetup.start_argv("ns1", lvdir, ("/a/file:/b/file",))
    assert argv[:4] == ["ip", "netns", "exec", "ns1"] and "_enter" in argv
    binds = [argv[i + 1] for i, a in enumerate(argv) if a == "--bind"]
    assert binds == ["/a/file:/b/file"] + ["%s/%s:%s" % (lvdir, sub, target) for sub, target in
                                          (("etc", "/etc/libvirt"), ("run", "/run/libvirt"),
                                           ("lib", "/var/lib/libvirt"),
                                           ("log", "/var/log/libvirt"),
                                           ("cache", "/var/cache/libvirt"))]
    assert argv[argv.index("--"):] == ["--", "libvirtd", "-d", "--listen", "--pid-file",
                                       "/run/libvirt/libvirtd.pid"]
    assert lvsetup.pid_of(lvdir) is None


def test_init_boots_the_guest_kernel_directly(tmp_path, monkeypatch):
    cache = tmp_path / "guest"
    cache.mkdir()
    (cache / "vmlinuz").write_text("k")
    (cache / "initrd.img").write_text("i")
    monkeypatch.setenv("CORRAL_GUEST_CACHE", str(cache))
    vc = vcluster._plan(str(tmp_path / "vl2"), 2, "libvirt", None)
    argv = vcluster._init_argv(vc, "sharedfile")
    assert "--enabled-hypervisors=libvirt" in argv and "-N" in argv
    hv = argv[argv.index("-H") + 1]
    assert hv == "libvirt:kernel_path=%s/vmlinuz,initrd_path=%s/initrd.img,root_path=/dev/vda" \
        % (cache, cache)


def test_hypervisor_refused_before_anything_is_made(tmp_path, monkeypatch):
    from corral.hypervisor.xen import driver as xen_driver
    monkeypatch.setattr(xen_driver, "dom0_problem", lambda: "this node is not running as a "
                        "Xen dom0")
    with pytest.raises(vcluster.VClusterError, match="xen-pvm needs a Xen dom0.*not running"):
        vcluster._check_hypervisor("xen-pvm")
    monkeypatch.setattr(xen_driver, "dom0_problem", lambda: None)
    vcluster._check_hypervisor("xen-pvm")
    with pytest.raises(vcluster.VClusterError, match="Unknown hypervisor"):
        vcluster._check_hypervisor("vmware")
    assert vcluster._parser().parse_args(
        ["create", "--base", "x", "--hypervisor", "libvirt"]).hypervisor == "libvirt"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_create_xen_pvm_without_dom0_fails_cleanly(tmp_path, capsys):
    """This machine is no Xen dom0: a clear error, and nothing made."""
    if os.path.exists("/proc/xen/capabilities"):
        pytest.skip("this machine has /proc/xen")
    base = tmp_path / "vx"
    rc = vcluster.main(["create", "--base", str(base), "--nodes", "1",
                        "--hypervisor", "xen-pvm"])
    assert rc == 1
    assert "xen-pvm needs a Xen dom0" in capsys.readouterr().err
    assert not base.exists()


def test_node_bridges_get_distinct_fixed_macs(tmp_path):
    vc = vcluster._plan(str(tmp_path / "vl3"), 3, "libvirt", None)
    macs = [vcluster.bridge_mac(n) for n in vc.nodes]
    assert len(set(macs)) == 3
    for mac, node in zip(macs, vc.nodes):
        first = int(mac.split(":")[0], 16)
        assert first & 2 and not first & 1           # locally administered, unicast
        assert mac.endswith(":%02x" % int(node.ip.rsplit(".", 1)[1]))
