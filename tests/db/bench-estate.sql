-- The benchmark estate (bench/inventory.sh), loaded after schema-4.22.1.sql +
-- seed-4.22.1.sql: 20,000 user VMs with 60,000 volumes (ROOT + 2 data disks
-- each; one VM in 7 on the custom offering with its size in the details),
-- 500 system VMs with their disks, and 5,000 expunged VMs with 10,000 expunged
-- volumes. Generated server-side from the Sequence engine: a few statements,
-- not 80,000 round trips.
SET FOREIGN_KEY_CHECKS=0;
SET UNIQUE_CHECKS=0;

INSERT INTO `vm_instance` (`id`, `name`, `uuid`, `instance_name`, `state`, `vm_template_id`, `guest_os_id`, `data_center_id`, `vnc_password`, `created`, `removed`, `type`, `vm_type`, `account_id`, `domain_id`, `service_offering_id`, `hypervisor_type`, `display_name`)
SELECT 100000 + v.seq, CONCAT('vm-', v.seq), UUID(), CONCAT('i-5-', 100000 + v.seq, '-VM'),
  IF(v.seq % 10 = 0, 'Stopped', 'Running'), 201, 99, 1, 'x', '2020-01-01 00:00:00', NULL, 'User', 'User',
  IF(v.seq % 3 = 0, 2, 5), IF(v.seq % 3 = 0, 1, 2), IF(v.seq % 7 = 0, 10, 1 + v.seq % 2), 'XenServer',
  CONCAT('VM number ', v.seq)
FROM seq_1_to_20000 v;

INSERT INTO `vm_instance_details` (`vm_id`, `name`, `value`, `display`)
SELECT 100000 + v.seq, ELT(d.seq, 'cpuNumber', 'cpuSpeed', 'memory'), ELT(d.seq, '2', '2000', '4096'), 1
FROM seq_1_to_20000 v JOIN seq_1_to_3 d WHERE v.seq % 7 = 0;

INSERT INTO `volumes` (`id`, `account_id`, `domain_id`, `pool_id`, `instance_id`, `device_id`, `name`, `uuid`, `size`, `path`, `data_center_id`, `volume_type`, `disk_offering_id`, `template_id`, `created`, `removed`, `state`, `format`)
SELECT 1000000 + v.seq * 3 + d.seq, IF(v.seq % 3 = 0, 2, 5), IF(v.seq % 3 = 0, 1, 2), 1, 100000 + v.seq, d.seq,
  IF(d.seq = 0, CONCAT('ROOT-', 100000 + v.seq), CONCAT('DATA-', v.seq, '-', d.seq)), UUID(),
  IF(d.seq = 0, 21474836480, 5368709120), UUID(), 1, IF(d.seq = 0, 'ROOT', 'DATADISK'), IF(d.seq = 0, 1, 3),
  IF(d.seq = 0, 201, NULL), '2020-01-01 00:00:00', NULL, 'Ready', 'VHD'
FROM seq_1_to_20000 v JOIN seq_0_to_2 d;

-- system VMs and their disks
INSERT INTO `vm_instance` (`id`, `name`, `uuid`, `instance_name`, `state`, `vm_template_id`, `guest_os_id`, `data_center_id`, `vnc_password`, `created`, `removed`, `type`, `vm_type`, `account_id`, `domain_id`, `service_offering_id`, `hypervisor_type`, `display_name`)
SELECT 200000 + v.seq, CONCAT('r-', 200000 + v.seq, '-VM'), UUID(), CONCAT('r-', 200000 + v.seq, '-VM'), 'Running', 1,
  184, 1, 'x', '2020-01-01 00:00:00', NULL, 'DomainRouter', 'DomainRouter', 2, 1, 9, 'XenServer', NULL
FROM seq_1_to_500 v;
INSERT INTO `volumes` (`id`, `account_id`, `domain_id`, `pool_id`, `instance_id`, `device_id`, `name`, `uuid`, `size`, `path`, `data_center_id`, `volume_type`, `disk_offering_id`, `template_id`, `created`, `removed`, `state`, `format`)
SELECT 2000000 + v.seq, 2, 1, 1, 200000 + v.seq, 0, CONCAT('ROOT-', 200000 + v.seq), UUID(), 2621440000, UUID(), 1, 'ROOT',
  9, 1, '2020-01-01 00:00:00', NULL, 'Ready', 'VHD'
FROM seq_1_to_500 v;

-- expunged user VMs and volumes
INSERT INTO `vm_instance` (`id`, `name`, `uuid`, `instance_name`, `state`, `vm_template_id`, `guest_os_id`, `data_center_id`, `vnc_password`, `created`, `removed`, `type`, `vm_type`, `account_id`, `domain_id`, `service_offering_id`, `hypervisor_type`, `display_name`)
SELECT 300000 + v.seq, CONCAT('gone-', v.seq), UUID(), CONCAT('i-5-', 300000 + v.seq, '-VM'), 'Expunging', 201, 99, 1, 'x',
  '2018-01-01 00:00:00', '2019-01-01 00:00:00', 'User', 'User', 5, 2, 1, 'XenServer', CONCAT('gone ', v.seq)
FROM seq_1_to_5000 v;
INSERT INTO `volumes` (`id`, `account_id`, `domain_id`, `pool_id`, `instance_id`, `device_id`, `name`, `uuid`, `size`, `path`, `data_center_id`, `volume_type`, `disk_offering_id`, `template_id`, `created`, `removed`, `state`, `format`)
SELECT 3000000 + v.seq * 2 + d.seq, 5, 2, 1, 300000 + v.seq, d.seq, CONCAT('gone-', v.seq, '-', d.seq), UUID(), 5368709120,
  UUID(), 1, IF(d.seq = 0, 'ROOT', 'DATADISK'), 3, NULL, '2018-01-01 00:00:00', '2019-01-01 00:00:00', 'Expunged', 'VHD'
FROM seq_1_to_5000 v JOIN seq_0_to_1 d;

SET FOREIGN_KEY_CHECKS=1;
SET UNIQUE_CHECKS=1;
