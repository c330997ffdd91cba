-- Edge cases for the inventory, one per defect of the seed article's query
-- (doc/cloudstack-facts.md). Loads after schema-<v>.sql + seed-<v>.sql on
-- every release: only columns present in 4.5.2 .. 4.22.1 are used, and
-- @DETAILS@ is replaced by user_vm_details or vm_instance_details.
-- Ids >= 100 so they never collide with the seed.

-- two domains called Dev (names are unique per parent only) and one account name in both
INSERT INTO `domain` (`id`, `parent`, `name`, `uuid`, `owner`, `path`, `level`, `child_count`, `next_child_seq`, `removed`, `state`) VALUES
  (100, 2, 'Dev', 'aaaa0000-0000-4000-8000-000000000100', 2, '/SPDM Inc/Dev/', 2, 0, 1, NULL, 'Active'),
  (101, 1, 'Dev', 'aaaa0000-0000-4000-8000-000000000101', 2, '/Dev/', 1, 0, 1, NULL, 'Active');
INSERT INTO `account` (`id`, `account_name`, `uuid`, `type`, `domain_id`, `state`, `removed`, `cleanup_needed`, `default`) VALUES
  (100, 'devuser', 'bbbb0000-0000-4000-8000-000000000100', 0, 100, 'enabled', NULL, 0, 0),
  (101, 'devuser', 'bbbb0000-0000-4000-8000-000000000101', 2, 101, 'enabled', NULL, 0, 0);

INSERT INTO `vm_instance` (`id`, `name`, `uuid`, `instance_name`, `state`, `vm_template_id`, `guest_os_id`, `data_center_id`, `vnc_password`, `created`, `removed`, `type`, `vm_type`, `account_id`, `domain_id`, `service_offering_id`, `hypervisor_type`, `display_name`) VALUES
  -- a VM without any volume: must appear, with a problem
  (101, 'novols', 'cccc0000-0000-4000-8000-000000000101', 'i-5-101-VM', 'Stopped', 201, 99, 1, 'x', '2015-01-01 00:00:00', NULL, 'User', 'User', 5, 2, 1, 'XenServer', 'novols'),
  -- Stopped, but removed: never recovered
  (102, 'removedvm', 'cccc0000-0000-4000-8000-000000000102', 'i-5-102-VM', 'Stopped', 201, 99, 1, 'x', '2015-01-01 00:00:00', '2015-06-01 00:00:00', 'User', 'User', 5, 2, 1, 'XenServer', 'removedvm'),
  -- reinstalled: a Ready ROOT and the old ROOT in Destroy with the same name
  (103, 'reinstalled', 'cccc0000-0000-4000-8000-000000000103', 'i-5-103-VM', 'Running', 201, 99, 1, 'x', '2015-01-01 00:00:00', NULL, 'User', 'User', 5, 2, 1, 'XenServer', 'reinstalled'),
  -- a data disk that was never created (Allocated, no path, no pool)
  (104, 'allocvm', 'cccc0000-0000-4000-8000-000000000104', 'i-5-104-VM', 'Running', 201, 99, 1, 'x', '2015-01-01 00:00:00', NULL, 'User', 'User', 5, 2, 1, 'XenServer', 'allocvm'),
  -- ROOT on the removed storage pool 2
  (105, 'oldpoolvm', 'cccc0000-0000-4000-8000-000000000105', 'i-5-105-VM', 'Running', 201, 99, 1, 'x', '2015-01-01 00:00:00', NULL, 'User', 'User', 5, 2, 1, 'XenServer', 'oldpoolvm'),
  -- custom offering 10: 4 CPUs at 2000 MHz and 8192 MB from the details
  (106, 'customvm', 'cccc0000-0000-4000-8000-000000000106', 'i-5-106-VM', 'Running', 201, 99, 1, 'x', '2015-01-01 00:00:00', NULL, 'User', 'User', 5, 2, 10, 'XenServer', 'customvm'),
  -- custom offering without details: size unknown
  (107, 'customnodetails', 'cccc0000-0000-4000-8000-000000000107', 'i-5-107-VM', 'Running', 201, 99, 1, 'x', '2015-01-01 00:00:00', NULL, 'User', 'User', 5, 2, 10, 'XenServer', 'customnodetails'),
  -- same account name in two domains called Dev
  (108, 'devvm', 'cccc0000-0000-4000-8000-000000000108', 'i-100-108-VM', 'Running', 201, 99, 1, 'x', '2015-01-01 00:00:00', NULL, 'User', 'User', 100, 100, 2, 'XenServer', 'devvm'),
  (109, 'devvm', 'cccc0000-0000-4000-8000-000000000109', 'i-101-109-VM', 'Running', 201, 99, 1, 'x', '2015-01-01 00:00:00', NULL, 'User', 'User', 101, 101, 2, 'XenServer', 'devvm'),
  -- disks inserted out of order
  (110, 'manydisks', 'cccc0000-0000-4000-8000-000000000110', 'i-5-110-VM', 'Running', 201, 99, 1, 'x', '2015-01-01 00:00:00', NULL, 'User', 'User', 5, 2, 1, 'XenServer', 'manydisks'),
  -- hostile strings (quotes, backslash, newline, tab, 3-byte UTF-8; 4-byte UTF-8 goes in from the tests where columns allow it)
  (111, 'it''s "q" \\ back\nslash', 'cccc0000-0000-4000-8000-000000000111', 'i-5-111-VM', 'Running', 201, 99, 1, 'x', '2015-01-01 00:00:00', NULL, 'User', 'User', 5, 2, 1, 'XenServer', 'tab\there, comma, €uro; DROP TABLE vm_instance; --'),
  -- a system VM of a user-looking name: filtered on type, not name
  (112, 'i-look-like-a-user', 'cccc0000-0000-4000-8000-000000000112', 'r-112-VM', 'Running', 1, 184, 1, 'x', '2015-01-01 00:00:00', NULL, 'DomainRouter', 'DomainRouter', 5, 2, 9, 'XenServer', 'router');

INSERT INTO `@DETAILS@` (`vm_id`, `name`, `value`, `display`) VALUES
  (106, 'cpuNumber', '4', 1),
  (106, 'cpuSpeed', '2000', 1),
  (106, 'memory', '8192', 1);

INSERT INTO `volumes` (`id`, `account_id`, `domain_id`, `pool_id`, `instance_id`, `device_id`, `name`, `uuid`, `size`, `path`, `data_center_id`, `volume_type`, `disk_offering_id`, `template_id`, `created`, `removed`, `state`, `format`) VALUES
  (103, 5, 2, 1, 103, 0, 'ROOT-103', 'dddd0000-0000-4000-8000-000000000103', 21474836480, 'eeee0000-0000-4000-8000-000000000103', 1, 'ROOT', 1, 201, '2015-01-01 00:00:00', NULL, 'Destroy', 'VHD'),
  (104, 5, 2, 1, 103, 0, 'ROOT-103', 'dddd0000-0000-4000-8000-000000000104', 21474836480, 'eeee0000-0000-4000-8000-000000000104', 1, 'ROOT', 1, 201, '2015-02-01 00:00:00', NULL, 'Ready', 'VHD'),
  (105, 5, 2, 1, 104, 0, 'ROOT-104', 'dddd0000-0000-4000-8000-000000000105', 21474836480, 'eeee0000-0000-4000-8000-000000000105', 1, 'ROOT', 1, 201, '2015-01-01 00:00:00', NULL, 'Ready', 'VHD'),
  (106, 5, 2, NULL, 104, 1, 'DATA-104', 'dddd0000-0000-4000-8000-000000000106', 5368709120, NULL, 1, 'DATADISK', 3, NULL, '2015-01-01 00:00:00', NULL, 'Allocated', NULL),
  (107, 5, 2, 2, 105, 0, 'ROOT-105', 'dddd0000-0000-4000-8000-000000000107', 21474836480, 'eeee0000-0000-4000-8000-000000000107', 1, 'ROOT', 1, 201, '2015-01-01 00:00:00', NULL, 'Ready', 'VHD'),
  (108, 5, 2, 1, 106, 0, 'ROOT-106', 'dddd0000-0000-4000-8000-000000000108', 21474836480, 'eeee0000-0000-4000-8000-000000000108', 1, 'ROOT', 1, 201, '2015-01-01 00:00:00', NULL, 'Ready', 'VHD'),
  (109, 5, 2, 1, 107, 0, 'ROOT-107', 'dddd0000-0000-4000-8000-000000000109', 21474836480, 'eeee0000-0000-4000-8000-000000000109', 1, 'ROOT', 1, 201, '2015-01-01 00:00:00', NULL, 'Ready', 'VHD'),
  (110, 100, 100, 1, 108, 0, 'ROOT-108', 'dddd0000-0000-4000-8000-000000000110', 21474836480, 'eeee0000-0000-4000-8000-000000000110', 1, 'ROOT', 2, 201, '2015-01-01 00:00:00', NULL, 'Ready', 'VHD'),
  (111, 101, 101, 1, 109, 0, 'ROOT-109', 'dddd0000-0000-4000-8000-000000000111', 21474836480, 'eeee0000-0000-4000-8000-000000000111', 1, 'ROOT', 2, 201, '2015-01-01 00:00:00', NULL, 'Ready', 'VHD'),
  (122, 5, 2, 1, 110, 2, 'DATA-110-b', 'dddd0000-0000-4000-8000-000000000122', 1073741824, 'eeee0000-0000-4000-8000-000000000122', 1, 'DATADISK', 3, NULL, '2015-01-01 00:00:00', NULL, 'Ready', 'VHD'),
  (121, 5, 2, 1, 110, 4, 'DATA-110-c', 'dddd0000-0000-4000-8000-000000000121', 1073741824, 'eeee0000-0000-4000-8000-000000000121', 1, 'DATADISK', 3, NULL, '2015-01-01 00:00:00', NULL, 'Ready', 'VHD'),
  (123, 5, 2, 1, 110, 0, 'ROOT-110', 'dddd0000-0000-4000-8000-000000000123', 21474836480, 'eeee0000-0000-4000-8000-000000000123', 1, 'ROOT', 1, 201, '2015-01-01 00:00:00', NULL, 'Ready', 'VHD'),
  (120, 5, 2, 1, 110, 1, 'DATA-110-a', 'dddd0000-0000-4000-8000-000000000120', 1073741824, 'eeee0000-0000-4000-8000-000000000120', 1, 'DATADISK', 3, NULL, '2015-01-01 00:00:00', NULL, 'Ready', 'VHD'),
  -- removed but still Ready: removed wins
  (124, 5, 2, 1, 110, 5, 'DATA-110-gone', 'dddd0000-0000-4000-8000-000000000124', 1073741824, 'eeee0000-0000-4000-8000-000000000124', 1, 'DATADISK', 3, NULL, '2015-01-01 00:00:00', '2015-03-01 00:00:00', 'Ready', 'VHD'),
  (125, 5, 2, 1, 111, 0, 'ROOT ''x'' \\ "y"\nz', 'dddd0000-0000-4000-8000-000000000125', 21474836480, 'eeee0000-0000-4000-8000-000000000125', 1, 'ROOT', 1, 201, '2015-01-01 00:00:00', NULL, 'Ready', 'VHD'),
  (126, 5, 2, 1, 112, 0, 'ROOT-112', 'dddd0000-0000-4000-8000-000000000126', 2621440000, 'eeee0000-0000-4000-8000-000000000126', 1, 'ROOT', 9, 1, '2015-01-01 00:00:00', NULL, 'Ready', 'VHD');
