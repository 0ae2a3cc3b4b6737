import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.errors.TopicExistsException;

/**
 * Readiness check and topic provisioning for deploy/local/infra.sh, in one JVM.
 *
 * <p>Usage: {@code KafkaAdmin <bootstrap> <timeout-seconds> <topic>:<partitions>...}
 *
 * <p>Retries until the deadline: the broker answers, the missing topics are created
 * (replication factor 1), every partition of every listed topic has a leader, and the
 * group coordinator answers (which makes the broker create __consumer_offsets now rather
 * than on the first consumer's join). Exits 0 when all of that holds, 1 otherwise.
 */
public final class KafkaAdmin {

    private static final class NotReady extends Exception {
        NotReady(String message) {
            super(message);
        }
    }

    private KafkaAdmin() {}

    public static void main(String[] args) throws InterruptedException {
        if (args.length < 2) {
            System.err.println("usage: KafkaAdmin <bootstrap> <timeout-seconds> <topic>:<partitions>...");
            System.exit(2);
        }
        String bootstrap = args[0];
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(Long.parseLong(args[1]));
        Map<String, Integer> wanted = new LinkedHashMap<>();
        for (int i = 2; i < args.length; i++) {
            int colon = args[i].lastIndexOf(':');
            wanted.put(args[i].substring(0, colon), Integer.parseInt(args[i].substring(colon + 1)));
        }

        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(AdminClientConfig.CLIENT_ID_CONFIG, "matchmaking-infra");
        props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "5000");
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "15000");
        props.put(AdminClientConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, "500");

        Throwable last = null;
        try (Admin admin = Admin.create(props)) {
            while (System.nanoTime() < deadline) {
                try {
                    List<String> created = ensure(admin, wanted);
                    System.out.printf(
                            "kafka %s ready: %d topic(s) checked, created: %s%n",
                            bootstrap, wanted.size(), created.isEmpty() ? "none" : String.join(" ", created));
                    return;
                } catch (NotReady | ExecutionException | RuntimeException e) {
                    last = e instanceof ExecutionException && e.getCause() != null ? e.getCause() : e;
                }
                Thread.sleep(300);
            }
        }
        System.err.println("kafka " + bootstrap + " not ready in time: " + last);
        System.exit(1);
    }

    private static List<String> ensure(Admin admin, Map<String, Integer> wanted)
            throws NotReady, ExecutionException, InterruptedException {
        List<Node> nodes = new ArrayList<>(admin.describeCluster().nodes().get());
        if (nodes.isEmpty()) {
            throw new NotReady("no broker registered yet");
        }

        Set<String> existing = admin.listTopics().names().get();
        List<NewTopic> missing = new ArrayList<>();
        for (Map.Entry<String, Integer> topic : wanted.entrySet()) {
            if (!existing.contains(topic.getKey())) {
                missing.add(new NewTopic(topic.getKey(), topic.getValue(), (short) 1));
            }
        }
        List<String> created = new ArrayList<>();
        if (!missing.isEmpty()) {
            var results = admin.createTopics(missing).values();
            for (Map.Entry<String, ? extends org.apache.kafka.common.KafkaFuture<Void>> r : results.entrySet()) {
                try {
                    r.getValue().get();
                    created.add(r.getKey());
                } catch (ExecutionException e) {
                    if (!(e.getCause() instanceof TopicExistsException)) {
                        throw e;
                    }
                }
            }
        }

        if (!wanted.isEmpty()) {
            Map<String, TopicDescription> described =
                    admin.describeTopics(wanted.keySet()).allTopicNames().get();
            for (TopicDescription description : described.values()) {
                for (TopicPartitionInfo partition : description.partitions()) {
                    if (partition.leader() == null || partition.leader().isEmpty()) {
                        throw new NotReady(description.name() + "-" + partition.partition() + " has no leader");
                    }
                }
                int want = wanted.get(description.name());
                if (description.partitions().size() < want) {
                    System.err.printf(
                            "warning: topic %s has %d partition(s), expected %d (left as is)%n",
                            description.name(), description.partitions().size(), want);
                }
            }
        }

        // FindCoordinator for a group: the broker creates __consumer_offsets if needed.
        admin.listConsumerGroupOffsets("matchmaking-infra-readiness").partitionsToOffsetAndMetadata().get();
        return created;
    }
}
