"""Parsing labgrid-client's place listing (text recorded from labgrid 26 `show` / `-v places`), no farm needed."""
from tinyexit.firmware_bridge.harness.labgrid_target import coordinator_address, parse_places
from tinyexit.firmware_bridge.harness.targets import bench_name, target_name

SHOW = """Place 'qemu-0':
  tags: farm=local, kind=qemu
  matches:
    exporter-0/qemu-0/NetworkSerialPort
  acquired: vm/root
  acquired resources:
    exporter-0/qemu-0/NetworkSerialPort/RawSerialPort
  created: 2026-12-05 12:37:59.492324
  changed: 2026-12-05 12:38:06.330632
Acquired resource 'RawSerialPort' (exporter-0/qemu-0/NetworkSerialPort/RawSerialPort):
  {'acquired': 'qemu-0',
   'avail': True,
   'cls': 'NetworkSerialPort',
   'params': {'extra': {'path': '/dev/pts/1',
                        'proxy': 'localhost',
                        'proxy_required': False},
              'host': '127.0.0.1',
              'port': 45257,
              'speed': 115200}}
Acquired resource 'NetworkPowerPort' (exporter-0/qemu-0/NetworkPowerPort/NetworkPowerPort):
  {'acquired': 'qemu-0', 'avail': True, 'cls': 'NetworkPowerPort', 'params': {'model': 'simplerest', 'host': 'x', 'index': 0}}
"""

LISTING = """Place 'agent-0':
  tags: farm=local, kind=agent
  matches:
    exporter-0/agent-0/NetworkSerialPort
  acquired: None
  acquired resources:
  created: 2026-12-05 12:38:03.678397
  changed: 2026-12-05 12:38:04.822667
Place 'qemu-1':
  matches:
    exporter-1/qemu-1/NetworkSerialPort
  acquired: None
  acquired resources:
  created: 2026-12-05 12:38:01.592414
  changed: 2026-12-05 12:38:03.022920
"""


def test_show_gives_holder_tags_serial_url_and_power():
    (name, p), = parse_places(SHOW).items()
    assert (name, p.acquired, p.tags) == ("qemu-0", "vm/root", {"farm": "local", "kind": "qemu"})
    assert p.changed == "2026-12-05 12:38:06.330632"
    assert p.serial_url() == "rfc2217://127.0.0.1:45257"
    assert p.power() is True


def test_listing_of_free_places():
    places = parse_places(LISTING)
    assert list(places) == ["agent-0", "qemu-1"]
    assert places["agent-0"].tags == {"farm": "local", "kind": "agent"} and places["qemu-1"].tags == {}
    assert all(p.acquired is None and p.serial_url() is None and not p.power() for p in places.values())


def test_names_and_coordinator():
    assert target_name("labgrid:qemu-0") == "labgrid-qemu-0"
    assert bench_name(["labgrid:kind=qemu"]) == "labgrid-kind=qemu"
    assert bench_name(["labgrid:qemu-*"]) == "labgrid-qemu"
    assert coordinator_address("h:1", {"LG_COORDINATOR": "e:2"}) == "h:1"
    assert coordinator_address(None, {"LG_COORDINATOR": "e:2"}) == "e:2"
    assert coordinator_address(None, {}) == "127.0.0.1:20408"
