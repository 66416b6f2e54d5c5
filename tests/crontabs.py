"""Realistic crontabs (a user's `crontab -l` and a system /etc/crontab), shared by the import tests."""

USER_CRONTAB = r"""# m h  dom mon dow   command
MAILTO=ops@example.org
SHELL=/bin/bash
PATH=/usr/local/bin:/usr/bin:/bin
BACKUP_DIR = "/srv/backups"

# nightly database dump, weekdays
0 3 * * 1-5   pg_dump -Fc billing > "$BACKUP_DIR/billing-$(date +\%F).dump"
*/15 * * * *  /usr/local/bin/sync-mirror --quiet
30 1 * * *    /usr/local/bin/rotate-logs   # in the DST gap in spring
0 1 * * 0     find /tmp -mtime +7 -delete
@hourly       /usr/local/bin/heartbeat.sh
@reboot       /usr/local/bin/start-tunnel
CRON_TZ=America/New_York
0 9 1 * *     /usr/local/bin/monthly-report --email
0 9 * * mon-fri  echo "standup" | wall
5 4 * * sun   echo "weekly" | mail -s report ops%example.org
@daily        /usr/local/bin/cleanup
0 12 15 6 *   /usr/local/bin/midsummer
0 */6 * * *   /usr/local/bin/sync-mirror --quiet
"""

SYSTEM_CRONTAB = """# /etc/crontab: system-wide crontab
SHELL=/bin/sh
PATH=/usr/local/sbin:/usr/local/bin:/sbin:/bin:/usr/sbin:/usr/bin

# Example of job definition:
# .---------------- minute (0 - 59)
# |  .------------- hour (0 - 23)
# m h dom mon dow user  command
17 *\t* * *\troot    cd / && run-parts --report /etc/cron.hourly
25 6\t* * *\troot\ttest -x /usr/sbin/anacron || ( cd / && run-parts --report /etc/cron.daily )
47 6\t* * 7\troot\ttest -x /usr/sbin/anacron || ( cd / && run-parts --report /etc/cron.weekly )
52 6\t1 * *\troot\ttest -x /usr/sbin/anacron || ( cd / && run-parts --report /etc/cron.monthly )
*/5 * * * *   www-data  php /var/www/cron.php
0 2 * * *     postgres  /usr/bin/vacuumdb --all --analyze
@reboot       root      /usr/local/sbin/firstboot
0 0 * * *     backup
"""
